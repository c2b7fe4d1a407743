"""Deleting a whole repository (domain/repository_deletion.py) over the in-memory store: the lifecycle hears one
`delete` event per manifest the repository held and one per tag that pointed at one, with the manifest's media type
and size, the actor and the clock's time; a refused deletion removes nothing and tells nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from stevedore.domain.errors import Denied, NameUnknown
from stevedore.domain.lifecycle import Event, EventAction, ManifestEvent
from stevedore.domain.manifests import OCI_INDEX, OCI_MANIFEST
from stevedore.domain.model import Digest, Reference, RepositoryName
from stevedore.domain.namespaces import AccessModel, Right
from stevedore.domain.registry import RegistryService
from stevedore.domain.repository_deletion import (
    RemovedManifest,
    RemovedRepository,
    RemovedTag,
    RepositoryDeletion,
    deletion_events,
)
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore
from tests.unit.test_namespaces_rules import World
from tests.unit.test_registry_service import image, index

NOW = datetime(2026, 12, 1, tzinfo=UTC)
APP, WEB = RepositoryName.parse("team/app"), RepositoryName.parse("team/web")
ONE, TWO, LOOSE = image(layers=(b"one",)), image(layers=(b"two",)), image(layers=(b"loose",))


class Heard:
    """A lifecycle that records what it is told."""

    def __init__(self) -> None:
        self.told: list[list[Event]] = []

    def before_push(self, name: RepositoryName) -> None:
        pass

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        pass

    def before_tag_change(self, change: object) -> None:
        pass

    def changed(self, events: Sequence[Event]) -> None:
        self.told.append(list(events))


@pytest.fixture
def world() -> World:
    w = World(AccessModel.PRIVATE)  # sam, with no right, may not even pull
    for name in ("ada", "paula", "sam"):
        w.user(name)
    w.team(ada=Right.PUSH, paula=Right.PULL)
    return w


@pytest.fixture
def store() -> InMemoryRegistryStore:
    """team/app: ONE as v1 and latest, TWO as v2, LOOSE untagged; team/web: ONE as v1."""
    store = InMemoryRegistryStore()
    service = RegistryService(store, InMemoryBlobStore(), FixedClock(NOW))
    for data in (b"{}", b"one", b"two", b"loose"):
        for name in (APP, WEB):
            service.push_blob(name, Digest.of(data), [data])
    for reference, body in (("v1", ONE), ("latest", ONE), ("v2", TWO), (str(Digest.of(LOOSE)), LOOSE)):
        service.put_manifest(APP, Reference.parse(reference), body, OCI_MANIFEST, pushed_by="ada")
    service.put_manifest(WEB, Reference.parse("v1"), ONE, OCI_MANIFEST, pushed_by="ada")
    return store


def deleted(digest: bytes, tag: str | None, actor: str | None = "ada", name: RepositoryName = APP) -> ManifestEvent:
    return ManifestEvent(EventAction.DELETE, name, Digest.of(digest), OCI_MANIFEST, len(digest), tag, actor, NOW)


def by_digest(*bodies: bytes) -> list[bytes]:
    return sorted(bodies, key=lambda body: str(Digest.of(body)))


def test_the_lifecycle_hears_a_delete_per_manifest_and_per_tag(world, store):
    heard = Heard()
    deletion = RepositoryDeletion(store, world.access(), lifecycle=heard, clock=FixedClock(NOW))
    deletion.delete(world.accounts.by_username("ada"), APP, actor="ada")

    tags_of = {ONE: ["latest", "v1"], TWO: ["v2"], LOOSE: []}
    expected = [
        event
        for body in by_digest(ONE, TWO, LOOSE)
        for event in [*(deleted(body, tag) for tag in tags_of[body]), deleted(body, None)]
    ]
    assert heard.told == [expected]  # told once, in one unit of work
    assert len(expected) == 6  # three manifests, three tags
    assert "team/app" not in store.repositories and "team/app" not in store.manifests
    assert store.tags["team/web"] == {"v1": Digest.of(ONE)}  # the other repository keeps all


def test_an_empty_repository_tells_nothing(world):
    store = InMemoryRegistryStore()
    store.ensure_repository(APP, NOW)  # a blob link or an upload made it, no manifest yet
    heard = Heard()
    RepositoryDeletion(store, world.access(), lifecycle=heard, clock=FixedClock(NOW)).delete(
        world.accounts.by_username("ada"), APP, actor="ada"
    )
    assert heard.told == []
    assert not store.repository_exists(APP)


def test_an_index_and_its_children_each_have_their_event():
    store = InMemoryRegistryStore()
    service = RegistryService(store, InMemoryBlobStore(), FixedClock(NOW))
    for data in (b"{}", b"one"):
        service.push_blob(APP, Digest.of(data), [data])
    service.put_manifest(APP, Reference.parse(str(Digest.of(ONE))), ONE, OCI_MANIFEST)
    parent = index(ONE)
    service.put_manifest(APP, Reference.parse("multi"), parent, OCI_INDEX)
    removed = store.delete_repository(APP)
    assert removed is not None
    events = deletion_events(APP, removed, None, NOW)
    parent_events = [
        ManifestEvent(EventAction.DELETE, APP, Digest.of(parent), OCI_INDEX, len(parent), tag, None, NOW)
        for tag in ("multi", None)
    ]
    child_event = deleted(ONE, None, actor=None)
    assert sorted(events, key=repr) == sorted([*parent_events, child_event], key=repr)


def test_a_tag_the_store_reports_without_its_manifest_is_still_announced():
    stray = Digest.of(b"stray")
    removed = RemovedRepository([RemovedManifest(Digest.of(ONE), OCI_MANIFEST, len(ONE))], [RemovedTag("x", stray)])
    assert deletion_events(APP, removed, "ada", NOW) == [
        deleted(ONE, None),
        ManifestEvent(EventAction.DELETE, APP, stray, None, None, "x", "ada", NOW),
    ]


def immutable(name: RepositoryName) -> None:
    raise Denied(f"the repository {name} holds 1 immutable tag")


@pytest.mark.parametrize(
    ("username", "error", "guard"),
    [
        ("sam", NameUnknown, None),  # may not even pull: the same as no repository
        ("paula", Denied, None),  # pulls, may not delete
        ("ada", Denied, immutable),  # may delete, but the guard refuses
    ],
)
def test_a_refused_deletion_removes_nothing_and_tells_nothing(world, store, username, error, guard):
    heard = Heard()
    deletion = RepositoryDeletion(store, world.access(), guard, lifecycle=heard, clock=FixedClock(NOW))
    with pytest.raises(error):
        deletion.delete(world.accounts.by_username(username), APP, actor=username)
    assert heard.told == []
    assert store.repository_exists(APP) and set(store.tags["team/app"]) == {"v1", "latest", "v2"}


def test_no_repository_is_name_unknown_and_tells_nothing(world):
    heard = Heard()
    deletion = RepositoryDeletion(InMemoryRegistryStore(), world.access(), lifecycle=heard, clock=FixedClock(NOW))
    with pytest.raises(NameUnknown):
        deletion.delete(world.accounts.by_username("ada"), APP, actor="ada")
    assert heard.told == []


def test_without_a_lifecycle_the_deletion_still_works(world, store):
    RepositoryDeletion(store, world.access()).delete(world.accounts.by_username("ada"), APP)
    assert not store.repository_exists(APP)

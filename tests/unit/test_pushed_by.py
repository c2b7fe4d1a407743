"""Who pushed a tag: RegistryService.put_manifest hands the caller's name to the store with every tag it sets."""

from __future__ import annotations

from stevedore.domain.manifests import OCI_MANIFEST
from stevedore.domain.model import Digest, Reference, RepositoryName
from stevedore.domain.registry import RegistryService
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore
from tests.unit.test_registry_service import image

APP = RepositoryName.parse("team/app")


def pushed(service: RegistryService, body: bytes, reference: str, by: str | None, extra=()) -> None:
    service.put_manifest(APP, Reference.parse(reference), body, OCI_MANIFEST, extra_tags=extra, pushed_by=by)


def service_with_blobs(*bodies_layers: bytes) -> tuple[RegistryService, InMemoryRegistryStore]:
    store = InMemoryRegistryStore()
    service = RegistryService(store, InMemoryBlobStore(), FixedClock())
    for data in (b"{}", *bodies_layers):
        service.push_blob(APP, Digest.of(data), [data])
    return service, store


def test_every_tag_a_push_sets_records_the_pusher_and_a_moved_tag_records_the_new_one():
    service, store = service_with_blobs(b"one", b"two")
    first, second = image(layers=(b"one",)), image(layers=(b"two",))
    pushed(service, first, "v1", "alice", extra=["stable"])
    assert store.pushers == {("team/app", "v1"): "alice", ("team/app", "stable"): "alice"}
    pushed(service, second, "v1", "team+ci")  # a robot moves v1; `stable` stays alice's
    assert store.tags["team/app"]["v1"] == Digest.of(second)
    assert store.pushers[("team/app", "v1")] == "team+ci" and store.pushers[("team/app", "stable")] == "alice"


def test_a_push_by_digest_tags_nothing_and_records_no_one():
    service, store = service_with_blobs(b"one")
    body = image(layers=(b"one",))
    pushed(service, body, "v1", "alice")
    pushed(service, body, str(Digest.of(body)), "bob")
    assert store.pushers == {("team/app", "v1"): "alice"}


def test_without_a_caller_the_pusher_is_unknown():
    service, store = service_with_blobs(b"one")
    service.put_manifest(APP, Reference.parse("v1"), image(layers=(b"one",)), OCI_MANIFEST)
    assert store.pushers == {("team/app", "v1"): None}

"""Quotas over in-memory fakes: sizes as typed on the page, who may set a quota, and the enforcer's decisions inside
RegistryService (a refused blob is neither recorded nor linked; a blob the namespace holds costs nothing)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stevedore.domain.errors import Denied, InvalidInput
from stevedore.domain.model import Account, BlobInfo, Digest, RepositoryName
from stevedore.domain.quotas import (
    PushKind,
    PushRequest,
    Quota,
    QuotaAdministration,
    QuotaEnforcer,
    Usage,
    human_bytes,
    may_see_usage,
    parse_count,
    parse_size,
)
from stevedore.domain.registry import RegistryService
from stevedore.domain.upload_tickets import UploadTickets
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore

GiB, MiB = 2**30, 2**20
APP = RepositoryName.parse("acme/app")
WEB = RepositoryName.parse("acme/web")
ELSEWHERE = RepositoryName.parse("other/app")
TICKETS = UploadTickets(b"k" * 32)  # shared by the services of one test, as by the processes of a server


class InMemoryQuotaStore:
    """The QuotaStore port over the registry fake's dicts. `locked` records the namespaces locked, as SQL would."""

    def __init__(self, registry: InMemoryRegistryStore) -> None:
        self.registry = registry
        self.quotas: dict[str, Quota] = {}
        self.locked: list[str] = []
        self.usage_sums = 0

    def quota(self, namespace: str) -> Quota | None:
        return self.quotas.get(namespace)

    def lock_quota(self, namespace: str) -> Quota | None:
        self.locked.append(namespace)
        return self.quotas.get(namespace)

    def put_quota(self, quota: Quota) -> None:
        self.quotas[quota.namespace] = quota

    def delete_quota(self, namespace: str) -> None:
        self.quotas.pop(namespace, None)

    def repository_exists(self, name: RepositoryName) -> bool:
        return self.registry.repository_exists(name)

    def _names(self, namespace: str) -> list[str]:
        return [n for n in self.registry.repositories if n == namespace or n.startswith(namespace + "/")]

    def repository_count(self, namespace: str) -> int:
        return len(self._names(namespace))

    def holds_blob(self, namespace: str, digest: Digest) -> bool:
        return any(digest in self.registry.links[n] for n in self._names(namespace))

    def usage(self, namespace: str) -> Usage:
        self.usage_sums += 1
        names = self._names(namespace)
        digests = set().union(*(self.registry.links[n] for n in names)) if names else set()
        blob_bytes = sum(self.registry.blobs[d].size for d in digests)
        manifest_bytes = sum(m.size for n in names for m in self.registry.manifests[n].values())
        return Usage(blob_bytes, manifest_bytes, len(names))

    def repository_usage(self, name: RepositoryName) -> Usage | None:
        if not self.registry.repository_exists(name):
            return None
        blob_bytes = sum(self.registry.blobs[d].size for d in self.registry.links[name.value])
        return Usage(blob_bytes, sum(m.size for m in self.registry.manifests[name.value].values()), 1)


# --- sizes -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10 GiB", 10 * GiB),
        ("10GiB", 10 * GiB),
        ("10 gib", 10 * GiB),
        ("500 MB", 500_000_000),
        ("1.5 KiB", 1536),
        ("0.5 kb", 500),
        ("123456", 123456),
        ("  42 b ", 42),
        ("0", 0),
        ("2 TiB", 2 * 2**40),
        ("1 PB", 10**15),
    ],
)
def test_sizes_are_typed_with_or_without_a_unit(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "GiB", "ten GiB", "-1", "-1 GiB", "10 GiBs", "10 XB", "1e9", "1,000", "10 G iB", "9" * 50, "0x10"]
)
def test_what_is_not_a_size_is_refused_with_a_clear_message(text):
    with pytest.raises(InvalidInput, match="not a size"):
        parse_size(text)


def test_a_size_beyond_what_the_column_holds_is_refused():
    with pytest.raises(InvalidInput, match="larger than any quota"):
        parse_size("9000 PiB")


@pytest.mark.parametrize(("text", "count"), [("0", 0), ("20", 20), (" 7 ", 7)])
def test_counts_are_whole_numbers(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["-1", "1.5", "ten", "²", "1 000", "9" * 41])
def test_what_is_not_a_count_is_refused(text):
    with pytest.raises(InvalidInput):
        parse_count(text)


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"), (10 * GiB, "10 GiB"), (700 * MiB, "700 MiB")],
)
def test_human_bytes(size, shown):
    assert human_bytes(size) == shown


# --- who may set and see ---------------------------------------------------------------------------------------------


def account(username: str, *, admin: bool = False, account_id: int = 1) -> Account:
    from datetime import UTC, datetime

    return Account(
        id=account_id,
        username=username,
        email=None,
        password_hash="x",
        is_admin=admin,
        is_active=True,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def registry():
    return InMemoryRegistryStore()


@pytest.fixture
def quotas(registry):
    return InMemoryQuotaStore(registry)


def test_only_an_administrator_sets_a_quota_and_a_namespace_admin_may_not(quotas):
    administration = QuotaAdministration(quotas, FixedClock())
    with pytest.raises(Denied):
        administration.set_quota(account("acme"), "acme", "100 GiB", "")  # the owner of the namespace acme
    with pytest.raises(Denied):
        administration.set_quota(None, "acme", "100 GiB", "")
    assert quotas.quotas == {}
    change = administration.set_quota(account("root", admin=True), "acme", "10 GiB", "5")
    assert quotas.quotas["acme"].max_bytes == 10 * GiB
    assert quotas.quotas["acme"].max_repositories == 5
    assert quotas.quotas["acme"].updated_by == "root"
    assert change.old is None and change.changed
    assert change.describe() == "storage 10 GiB, repositories 5 (was no quota)"


def test_empty_fields_remove_the_quota_and_the_change_tells_old_and_new(quotas):
    administration = QuotaAdministration(quotas, FixedClock())
    root = account("root", admin=True)
    administration.set_quota(root, "acme", "10 GiB", "")
    change = administration.set_quota(root, "acme", "", "")
    assert "acme" not in quotas.quotas
    assert change.describe() == "no quota (was storage 10 GiB, repositories no limit)"
    assert not administration.set_quota(root, "acme", " ", "").changed


def test_a_bad_value_stores_nothing(quotas):
    administration = QuotaAdministration(quotas, FixedClock())
    with pytest.raises(InvalidInput):
        administration.set_quota(account("root", admin=True), "acme", "10 GiB", "many")
    assert quotas.quotas == {}


class Rights:
    def __init__(self, rights: dict[tuple[str, str], str]) -> None:
        self.rights = rights

    def right_of(self, account: Account, namespace: str) -> str | None:
        return self.rights.get((account.username, namespace))


def test_members_and_administrators_see_the_usage_others_do_not():
    rights = Rights({("bob", "acme"): "pull"})
    assert may_see_usage(rights, account("bob"), "acme")
    assert may_see_usage(rights, account("root", admin=True), "acme")
    assert not may_see_usage(rights, account("eve"), "acme")
    assert not may_see_usage(rights, None, "acme")
    assert not may_see_usage(rights, replace(account("bob"), is_active=False), "acme")


# --- enforcement inside the registry's use cases ---------------------------------------------------------------------


def service_with(registry, quotas, blobs, kind=PushKind.BLOB, digest=None):
    enforcer = QuotaEnforcer(quotas, lambda: quotas, PushRequest(kind, digest))
    return RegistryService(registry, blobs, FixedClock(), lifecycle=enforcer, upload_tickets=TICKETS)


def push(registry, quotas, blobs, name, data: bytes):
    digest = Digest.of(data)
    return service_with(registry, quotas, blobs, digest=digest).push_blob(name, digest, [data])


@pytest.fixture
def blobs():
    return InMemoryBlobStore()


def test_a_namespace_without_a_quota_costs_one_lookup_and_no_sum(registry, quotas, blobs):
    calls = []
    original = quotas.quota
    quotas.quota = lambda namespace: calls.append(namespace) or original(namespace)
    push(registry, quotas, blobs, APP, b"x" * 100)
    assert calls == ["acme"]
    assert quotas.usage_sums == 0 and quotas.locked == []


def test_a_blob_beyond_the_byte_quota_is_refused_and_not_recorded(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", 1000, None))
    push(registry, quotas, blobs, APP, b"a" * 600)
    big = b"b" * 500
    with pytest.raises(Denied) as refused:
        push(registry, quotas, blobs, APP, big)
    assert refused.value.message == (
        "namespace acme is over its storage quota: 600 B used of 1000 B, and this blob needs 500 B"
    )
    assert refused.value.detail == {"namespace": "acme", "quota": "bytes", "used": 600, "limit": 1000, "needed": 500}
    assert Digest.of(big) not in registry.blobs
    assert Digest.of(big) not in registry.links[APP.value]
    assert quotas.locked == ["acme", "acme"]  # the row locked before summing, each time
    push(registry, quotas, blobs, APP, b"c" * 400)  # exactly up to the quota: allowed


def test_a_blob_the_namespace_holds_costs_nothing_even_at_the_quota(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", 1000, None))
    layer = b"a" * 1000
    push(registry, quotas, blobs, APP, layer)
    push(registry, quotas, blobs, APP, layer)  # a re-push
    push(registry, quotas, blobs, WEB, layer)  # the same layer into another repository of the namespace
    service = service_with(registry, quotas, blobs, digest=Digest.of(layer))
    assert service.mount_blob(RepositoryName.parse("acme/third"), APP, Digest.of(layer)) is not None
    assert quotas.usage("acme").blob_bytes == 1000


def test_a_mount_from_another_namespace_counts(registry, quotas, blobs):
    layer = b"z" * 800
    push(registry, quotas, blobs, ELSEWHERE, layer)
    quotas.put_quota(Quota("acme", 1000, None))
    push(registry, quotas, blobs, APP, b"a" * 300)
    service = service_with(registry, quotas, blobs, digest=Digest.of(layer))
    with pytest.raises(Denied, match="this blob needs 800 B"):
        service.mount_blob(APP, ELSEWHERE, Digest.of(layer))
    assert Digest.of(layer) not in registry.links[APP.value]


def test_an_upload_is_refused_at_its_start_when_the_namespace_is_full(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", 1000, None))
    push(registry, quotas, blobs, APP, b"a" * 1000)
    with pytest.raises(Denied, match="namespace acme is at its storage quota: 1000 B used of 1000 B"):
        service_with(registry, quotas, blobs).start_upload(APP, 1)
    quotas.put_quota(Quota("acme", 999, None))  # lowered below what it holds
    with pytest.raises(Denied, match="is over its storage quota"):
        service_with(registry, quotas, blobs).start_upload(APP, 1)
    quotas.put_quota(Quota("acme", 1001, None))
    assert service_with(registry, quotas, blobs).start_upload(APP, 1)


def test_a_chunked_upload_beyond_the_quota_is_refused_at_its_finish(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", 1000, None))
    service = service_with(registry, quotas, blobs)
    ticket = service.start_upload(APP, 1)
    data = b"q" * 1001
    service.append_upload(APP, ticket, 1, [data])
    finishing = service_with(registry, quotas, blobs, digest=Digest.of(data))
    with pytest.raises(Denied, match="0 B used of 1000 B, and this blob needs 1001 B"):
        finishing.finish_upload(APP, ticket, 1, Digest.of(data))
    assert Digest.of(data) not in registry.blobs


def test_a_manifest_is_refused_only_once_the_namespace_is_over(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", 1000, None))
    push(registry, quotas, blobs, APP, b"a" * 1000)
    manifests = QuotaEnforcer(quotas, lambda: quotas, PushRequest(PushKind.MANIFEST))
    manifests.before_push(APP)  # at the quota: the manifest of what was pushed still goes in
    quotas.put_quota(Quota("acme", 999, None))
    with pytest.raises(Denied, match="over its storage quota: 1000 B used of 999 B"):
        QuotaEnforcer(quotas, lambda: quotas, PushRequest(PushKind.MANIFEST)).before_push(APP)
    QuotaEnforcer(quotas, lambda: quotas, PushRequest(PushKind.OTHER)).before_push(APP)  # a tag put back


def test_the_repositories_quota_refuses_the_next_new_repository_only(registry, quotas, blobs):
    quotas.put_quota(Quota("acme", None, 2))
    push(registry, quotas, blobs, APP, b"1")
    push(registry, quotas, blobs, WEB, b"2")
    with pytest.raises(Denied) as refused:
        push(registry, quotas, blobs, RepositoryName.parse("acme/third"), b"3")
    assert refused.value.message == (
        "namespace acme is at its repositories quota: it has 2 of 2, so acme/third cannot be created"
    )
    assert "acme/third" not in registry.repositories
    push(registry, quotas, blobs, APP, b"4")  # an existing repository takes more
    push(registry, quotas, blobs, ELSEWHERE, b"5")  # another namespace is not concerned
    assert quotas.usage_sums == 0  # no byte quota: nothing summed


def test_a_refused_blob_at_its_own_location_is_deleted(registry, quotas):
    class LocatedBlobStore(InMemoryBlobStore):
        """Like S3: each upload's bytes at a place of their own."""

        deleted: list[tuple[Digest, str | None]] = []

        def finish(self, upload_id, digest, final_chunks=(), *, place=True):
            info = super().finish(upload_id, digest, final_chunks)
            return BlobInfo(info.digest, info.size, f"objects/{upload_id}")

        def delete(self, digest, location=None):
            self.deleted.append((digest, location))

    blobs = LocatedBlobStore()
    quotas.put_quota(Quota("acme", 10, None))
    with pytest.raises(Denied):
        push(registry, quotas, blobs, APP, b"x" * 11)
    assert [digest for digest, _location in blobs.deleted] == [Digest.of(b"x" * 11)]
    assert registry.blobs == {}


def test_a_refused_blob_leaves_no_bytes_where_the_place_derives_from_the_digest():
    """The folder store's way (the fake's): `finish(place=False)` keeps the verified bytes in the upload, and only a
    kept blob is placed, so a push the quota refuses leaves nothing at the digest's place."""
    from stevedore.domain.errors import Denied
    from stevedore.domain.lifecycle import NoLifecycle
    from stevedore.domain.model import RepositoryName
    from stevedore.domain.registry import RegistryService
    from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore

    class Refusing(NoLifecycle):
        def before_blob(self, name, digest, size):
            raise Denied("namespace alice is over its storage quota")

    blobs, store = InMemoryBlobStore(), InMemoryRegistryStore()
    service = RegistryService(store, blobs, FixedClock(), lifecycle=Refusing())
    data = b"a layer over the quota"
    with pytest.raises(Denied):
        service.push_blob(RepositoryName("alice/app"), Digest.of(data), [data])
    assert Digest.of(data) not in blobs.blobs and not blobs.kept
    assert store.linked_blob(RepositoryName("alice/app"), Digest.of(data)) is None


def test_a_sessions_closing_put_is_measured_once_not_summed_early():
    """The finish's blob is measured exactly by before_blob; before_push must not sum the namespace first."""
    store = InMemoryQuotaStore(InMemoryRegistryStore())
    store.put_quota(Quota("acme", max_bytes=1000, max_repositories=None, updated_at=None, updated_by=None))
    QuotaEnforcer(store, lambda: store, PushRequest(PushKind.FINISH)).before_push(APP)
    assert store.usage_sums == 0
    QuotaEnforcer(store, lambda: store, PushRequest(PushKind.BLOB)).before_push(APP)
    assert store.usage_sums == 1

"""RegistryService over the in-memory fakes: pushes, pulls, discovery and deletion, asserted on the stores' state."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stevedore.domain.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PayloadTooLarge,
    RangeInvalid,
    TagInvalid,
    TooManyUploads,
    UploadUnknown,
)
from stevedore.domain.manifests import OCI_INDEX, OCI_MANIFEST
from stevedore.domain.model import BlobInfo, ByteRange, Digest, Reference, RepositoryName, Tag
from stevedore.domain.registry import Page, RegistryService
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore

APP = RepositoryName.parse("team/app")
OTHER = RepositoryName.parse("team/other")
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ALICE, BOB = 1, 2


@pytest.fixture
def store():
    return InMemoryRegistryStore()


@pytest.fixture
def blobs():
    return InMemoryBlobStore()


@pytest.fixture
def service(store, blobs):
    return RegistryService(store, blobs, FixedClock())


def ref(text: str) -> Reference:
    return Reference.parse(text)


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


def image(config: bytes = b"{}", layers: tuple[bytes, ...] = (b"layer",), **extra) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(LAYER_TYPE, layer) for layer in layers],
        **extra,
    }
    return json.dumps(document).encode()


def index(*children: bytes) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, c) for c in children]}
    ).encode()


def push_image(service, name=APP, tag: str = "latest", config: bytes = b"{}", layers=(b"layer",), **extra) -> bytes:
    """Push the blobs and the manifest; the manifest's bytes."""
    for data in (config, *layers):
        service.push_blob(name, Digest.of(data), [data])
    body = image(config, tuple(layers), **extra)
    service.put_manifest(name, ref(tag), body, OCI_MANIFEST)
    return body


# --- blobs ---------------------------------------------------------------------------------------------
def test_monolithic_push_stores_the_bytes_and_links_them_to_the_repository(service, store, blobs):
    digest = Digest.of(b"a layer")
    assert service.push_blob(APP, digest, [b"a ", b"layer"]) == BlobInfo(digest, 7)
    assert blobs.blobs[digest] == b"a layer"
    assert store.linked_blob(APP, digest) == BlobInfo(digest, 7)
    assert store.linked_blob(OTHER, digest) is None
    assert service.stat_blob(APP, digest) == BlobInfo(digest, 7)
    assert b"".join(service.open_blob(digest, ByteRange(2, 6))) == b"layer"


def test_monolithic_push_of_wrong_digest_leaves_nothing(service, store, blobs):
    wrong = Digest.of(b"claimed")
    with pytest.raises(DigestInvalid):
        service.push_blob(APP, wrong, [b"actual"])
    assert blobs.blobs == {} and blobs.uploads == {}
    assert store.blobs == {}
    assert store.linked_blob(APP, wrong) is None


def test_blob_of_another_repository_is_unknown_here(service):
    digest = Digest.of(b"elsewhere")
    service.push_blob(OTHER, digest, [b"elsewhere"])
    with pytest.raises(BlobUnknown):
        service.stat_blob(APP, digest)


def test_chunked_push_appends_in_order_and_commits_on_finish(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    assert service.upload_status(APP, upload_id, ALICE) == 0
    assert service.append_upload(APP, upload_id, ALICE, [b"first "], start=0) == 6
    assert service.append_upload(APP, upload_id, ALICE, [b"second "]) == 13  # streamed: no Content-Range
    assert service.upload_status(APP, upload_id, ALICE) == 13
    digest = Digest.of(b"first second last")
    info = service.finish_upload(APP, upload_id, ALICE, digest, [b"last"], start=13)
    assert info == BlobInfo(digest, 17)
    assert blobs.blobs[digest] == b"first second last"
    assert store.linked_blob(APP, digest) == info
    assert store.get_upload(upload_id) is None
    assert upload_id not in blobs.uploads


def test_started_upload_creates_the_repository_and_records_the_session(service, store):
    upload_id = service.start_upload(APP, ALICE, "sha512")
    assert store.repository_exists(APP)
    session = store.get_upload(upload_id)
    assert (session.repository, session.account_id, session.digest_algorithm) == (APP, ALICE, "sha512")


def test_upload_with_unsupported_algorithm_is_refused(service, store, blobs):
    with pytest.raises(DigestInvalid):
        service.start_upload(APP, ALICE, "md5")
    assert store.uploads == {} and blobs.uploads == {}


def test_out_of_order_chunk_is_refused_and_the_upload_kept(service, blobs):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"abc"], start=0)
    with pytest.raises(RangeInvalid):
        service.append_upload(APP, upload_id, ALICE, [b"xyz"], start=1)
    with pytest.raises(RangeInvalid):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"abcxyz"), [b"xyz"], start=5)
    assert bytes(blobs.uploads[upload_id]) == b"abc"


def test_finish_with_wrong_digest_keeps_the_upload_for_a_retry(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"content"])
    with pytest.raises(DigestInvalid):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"other"))
    assert store.get_upload(upload_id) is not None
    assert store.linked_blob(APP, Digest.of(b"content")) is None
    service.finish_upload(APP, upload_id, ALICE, Digest.of(b"content"))
    assert store.linked_blob(APP, Digest.of(b"content")) is not None


@pytest.mark.parametrize(
    ("name", "account_id"),
    [(APP, BOB), (APP, None), (OTHER, ALICE)],
    ids=["another-account", "anonymous", "another-repository"],
)
def test_an_upload_belongs_to_its_account_and_repository(service, blobs, name, account_id):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"mine"])
    with pytest.raises(UploadUnknown):
        service.upload_status(name, upload_id, account_id)
    with pytest.raises(UploadUnknown):
        service.append_upload(name, upload_id, account_id, [b"theirs"])
    with pytest.raises(UploadUnknown):
        service.finish_upload(name, upload_id, account_id, Digest.of(b"mine"))
    with pytest.raises(UploadUnknown):
        service.cancel_upload(name, upload_id, account_id)
    assert bytes(blobs.uploads[upload_id]) == b"mine"
    assert service.upload_status(APP, upload_id, ALICE) == 4


def test_anonymous_upload_is_usable_anonymously(service):
    upload_id = service.start_upload(APP, None)
    service.append_upload(APP, upload_id, None, [b"anon"])
    assert service.upload_status(APP, upload_id, None) == 4
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, upload_id, ALICE)


def test_unknown_upload_is_unknown(service):
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, "no-such-upload", ALICE)


def test_cancelled_upload_is_gone(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"bytes"])
    service.cancel_upload(APP, upload_id, ALICE)
    assert store.get_upload(upload_id) is None
    assert upload_id not in blobs.uploads
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, upload_id, ALICE)


def test_mount_links_a_blob_the_source_holds_without_new_bytes(service, store, blobs):
    digest = Digest.of(b"shared layer")
    service.push_blob(OTHER, digest, [b"shared layer"])
    assert service.mount_blob(APP, OTHER, digest) == BlobInfo(digest, 12)
    assert store.linked_blob(APP, digest) == BlobInfo(digest, 12)
    assert list(blobs.blobs) == [digest]


def test_mount_from_a_source_without_the_blob_links_nothing(service, store):
    digest = Digest.of(b"shared layer")
    service.push_blob(OTHER, digest, [b"shared layer"])
    assert service.mount_blob(APP, RepositoryName.parse("team/empty"), Digest.of(b"absent")) is None
    assert service.mount_blob(APP, RepositoryName.parse("team/empty"), digest) is None
    assert store.linked_blob(APP, digest) is None


def test_mount_of_a_blob_whose_bytes_are_gone_links_nothing(service, store, blobs):
    digest = Digest.of(b"collected")
    service.push_blob(OTHER, digest, [b"collected"])
    blobs.delete(digest)
    assert service.mount_blob(APP, OTHER, digest) is None
    assert store.linked_blob(APP, digest) is None


# --- the cap on open uploads ----------------------------------------------------------------------------
@pytest.fixture
def capped(store, blobs):
    return RegistryService(store, blobs, FixedClock(), max_open_uploads_per_account=3)


def test_uploads_past_the_cap_are_refused_and_leave_nothing(capped, store, blobs):
    for _ in range(3):
        capped.start_upload(APP, ALICE)
    with pytest.raises(TooManyUploads) as refused:
        capped.start_upload(OTHER, ALICE)
    assert "3 uploads are open" in refused.value.message and "DELETE" in refused.value.message
    assert refused.value.detail == {"open": 3, "limit": 3, "reclaimable_at": "2026-01-01T01:00:00+00:00"}
    assert len(store.uploads) == 3 and len(blobs.uploads) == 3
    assert not store.repository_exists(OTHER)


def test_the_cap_counts_each_account_on_its_own(capped):
    for _ in range(3):
        capped.start_upload(APP, ALICE)
    capped.start_upload(APP, BOB)  # Alice's sessions do not count against Bob


def test_finished_or_cancelled_uploads_free_their_slot(capped):
    first, second, _third = (capped.start_upload(APP, ALICE) for _ in range(3))
    capped.cancel_upload(APP, first, ALICE)
    capped.start_upload(APP, ALICE)
    capped.finish_upload(APP, second, ALICE, Digest.of(b""))
    capped.start_upload(APP, ALICE)
    with pytest.raises(TooManyUploads):
        capped.start_upload(APP, ALICE)


def test_monolithic_pushes_and_mounts_need_no_slot(capped, store):
    for _ in range(3):
        capped.start_upload(APP, ALICE)
    digest = Digest.of(b"whole")
    assert capped.push_blob(OTHER, digest, [b"whole"]) == BlobInfo(digest, 5)
    assert capped.mount_blob(APP, OTHER, digest) == BlobInfo(digest, 5)
    assert capped.mount_blob_from_any(RepositoryName.parse("team/third"), digest, lambda _repo: True) is not None
    assert len(store.uploads) == 3


def test_a_cap_of_zero_is_no_cap(store, blobs):
    service = RegistryService(store, blobs, FixedClock(), max_open_uploads_per_account=0)
    for _ in range(150):
        service.start_upload(APP, ALICE)
    assert len(store.uploads) == 150


def test_the_default_cap_is_a_hundred(service, store):
    for _ in range(100):
        service.start_upload(APP, ALICE)
    with pytest.raises(TooManyUploads):
        service.start_upload(APP, ALICE)


def test_an_account_s_uploads_are_forgotten_then_their_bytes_aborted(service, store, blobs):
    mine = [service.start_upload(APP, ALICE), service.start_upload(OTHER, ALICE)]
    service.append_upload(APP, mine[0], ALICE, [b"half a layer"])
    theirs = service.start_upload(APP, BOB)
    upload_ids = service.account_upload_ids(ALICE)
    assert sorted(upload_ids) == sorted(mine)
    service.forget_uploads(upload_ids)
    assert set(store.uploads) == {theirs} and set(blobs.uploads) == {*mine, theirs}  # the bytes wait for the commit
    service.abort_upload_bytes(upload_ids)
    service.abort_upload_bytes(upload_ids)  # idempotent
    assert set(store.uploads) == {theirs} and set(blobs.uploads) == {theirs}
    for upload_id in mine:
        with pytest.raises(UploadUnknown):
            service.upload_status(APP, upload_id, ALICE)
    assert service.account_upload_ids(ALICE) == []


# --- abandoned uploads: reclaimed at the cap -------------------------------------------------------------
@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def reclaiming(store, blobs, clock):
    return RegistryService(store, blobs, clock, max_open_uploads_per_account=3, abandoned_upload_seconds=3600)


def test_at_the_cap_abandoned_uploads_are_reclaimed_and_the_new_one_starts(reclaiming, store, blobs, clock):
    old = [reclaiming.start_upload(APP, ALICE) for _ in range(3)]
    reclaiming.append_upload(APP, old[0], ALICE, [b"never finished"])
    clock.advance(seconds=3601)
    fresh = reclaiming.start_upload(OTHER, ALICE)
    assert set(store.uploads) == {fresh} and set(blobs.uploads) == {fresh}
    with pytest.raises(UploadUnknown):
        reclaiming.append_upload(APP, old[0], ALICE, [b"too late"])


def test_only_uploads_older_than_the_age_are_reclaimed_oldest_first(reclaiming, store, clock):
    oldest = reclaiming.start_upload(APP, ALICE)
    clock.advance(seconds=1800)
    younger = [reclaiming.start_upload(APP, ALICE) for _ in range(2)]
    clock.advance(seconds=1801)  # the oldest is 3601 seconds old, the others 1801
    fresh = reclaiming.start_upload(APP, ALICE)
    assert set(store.uploads) == {*younger, fresh}
    assert oldest not in store.uploads
    with pytest.raises(TooManyUploads) as refused:
        reclaiming.start_upload(APP, ALICE)
    # The oldest left was started at 00:30:00 and is abandoned an hour later, 1799 seconds from now (01:00:01).
    assert "after 2026-01-01 01:30:00 UTC (in 1799 seconds)" in refused.value.message
    assert refused.value.detail["reclaimable_at"] == "2026-01-01T01:30:00+00:00"


def test_an_upload_exactly_as_old_as_the_age_is_not_reclaimed_yet(reclaiming, clock):
    for _ in range(3):
        reclaiming.start_upload(APP, ALICE)
    clock.advance(seconds=3600)
    with pytest.raises(TooManyUploads) as refused:
        reclaiming.start_upload(APP, ALICE)
    assert "(in 1 seconds)" in refused.value.message
    clock.advance(seconds=1)
    reclaiming.start_upload(APP, ALICE)


def test_the_refusal_says_when_the_oldest_upload_becomes_reclaimable(reclaiming, store, blobs, clock):
    for _ in range(3):
        reclaiming.start_upload(APP, ALICE)
        clock.advance(seconds=60)
    with pytest.raises(TooManyUploads) as refused:
        reclaiming.start_upload(APP, ALICE)
    message = refused.value.message
    assert "3 uploads are open" in message and "DELETE" in message
    assert "the oldest, started 2026-01-01 00:00:00 UTC, counts as abandoned after 2026-01-01 01:00:00 UTC" in message
    assert "(in 3420 seconds)" in message
    assert len(store.uploads) == 3 and len(blobs.uploads) == 3


def test_below_the_cap_old_uploads_are_left_alone(reclaiming, store, clock):
    old = reclaiming.start_upload(APP, ALICE)
    clock.advance(days=2)
    reclaiming.start_upload(APP, ALICE)
    assert old in store.uploads


def test_only_the_account_s_own_abandoned_uploads_are_reclaimed(reclaiming, store, clock):
    bobs = [reclaiming.start_upload(APP, BOB) for _ in range(3)]
    alices = [reclaiming.start_upload(APP, ALICE) for _ in range(3)]
    clock.advance(hours=2)
    reclaiming.start_upload(APP, ALICE)
    assert set(bobs) <= set(store.uploads)
    assert not set(alices) & set(store.uploads)


def test_an_age_of_zero_never_reclaims(store, blobs, clock):
    service = RegistryService(store, blobs, clock, max_open_uploads_per_account=3, abandoned_upload_seconds=0)
    for _ in range(3):
        service.start_upload(APP, ALICE)
    clock.advance(days=30)
    with pytest.raises(TooManyUploads) as refused:
        service.start_upload(APP, ALICE)
    assert refused.value.detail == {"open": 3, "limit": 3}
    assert len(store.uploads) == 3


def test_the_default_age_is_an_hour(store, blobs, clock):
    service = RegistryService(store, blobs, clock, max_open_uploads_per_account=1)
    service.start_upload(APP, ALICE)
    clock.advance(seconds=3600)
    with pytest.raises(TooManyUploads):
        service.start_upload(APP, ALICE)
    clock.advance(seconds=1)
    service.start_upload(APP, ALICE)


def test_account_uploads_lists_the_oldest_first_and_filters_by_age(reclaiming, store, clock):
    first = reclaiming.start_upload(APP, ALICE)
    clock.advance(seconds=100)
    second = reclaiming.start_upload(OTHER, ALICE)
    reclaiming.start_upload(APP, BOB)
    clock.advance(seconds=50)
    listed = reclaiming.account_uploads(ALICE)
    assert [u.id for u in listed] == [first, second]
    assert [u.repository for u in listed] == [APP, OTHER]
    assert listed[0].created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [u.id for u in reclaiming.account_uploads(ALICE, older_than_seconds=120)] == [first]
    assert reclaiming.account_uploads(ALICE, older_than_seconds=150) == []


def test_received_bytes_is_what_the_upload_holds_or_none(service):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"12345"])
    assert service.received_bytes(upload_id) == 5
    service.abort_upload_bytes([upload_id])
    assert service.received_bytes(upload_id) is None


# --- mounts without `from` -----------------------------------------------------------------------------
class Asked:
    """A `may_pull` predicate that allows some repositories and remembers every question."""

    def __init__(self, *allowed: RepositoryName) -> None:
        self.allowed = set(allowed)
        self.asked: list[RepositoryName] = []

    def __call__(self, repository: RepositoryName) -> bool:
        self.asked.append(repository)
        return repository in self.allowed


THIRD = RepositoryName.parse("team/third")


def test_mount_without_from_links_the_blob_from_a_repository_the_caller_may_pull(service, store, blobs):
    digest = Digest.of(b"shared layer")
    service.push_blob(OTHER, digest, [b"shared layer"])
    assert service.mount_blob_from_any(APP, digest, Asked(OTHER)) == BlobInfo(digest, 12)
    assert store.linked_blob(APP, digest) == BlobInfo(digest, 12)
    assert list(blobs.blobs) == [digest]


def test_mount_without_from_ignores_repositories_the_caller_may_not_pull(service, store):
    digest = Digest.of(b"secret layer")
    service.push_blob(OTHER, digest, [b"secret layer"])
    may_pull = Asked(THIRD)
    assert service.mount_blob_from_any(APP, digest, may_pull) is None
    assert store.linked_blob(APP, digest) is None
    assert may_pull.asked == [OTHER]


@pytest.mark.parametrize("allowed", [[], [0], [4], [1, 3]], ids=["none", "first", "last", "some"])
def test_mount_without_from_asks_about_every_holder_without_stopping_early(service, allowed):
    """The work done must not tell where an inaccessible copy sorts, nor stop at the first accessible one."""
    digest = Digest.of(b"everywhere")
    holders = [RepositoryName.parse(f"team/r{i}") for i in range(5)]
    for holder in holders:
        service.push_blob(holder, digest, [b"everywhere"])
    may_pull = Asked(*(holders[i] for i in allowed))
    mounted = service.mount_blob_from_any(THIRD, digest, may_pull)
    assert may_pull.asked == holders
    assert (mounted is not None) == bool(allowed)


def test_mount_without_from_of_a_blob_nobody_holds_is_none(service, store):
    assert service.mount_blob_from_any(APP, Digest.of(b"nowhere"), Asked(APP, OTHER)) is None
    assert store.linked_blob(APP, Digest.of(b"nowhere")) is None


def test_mount_without_from_of_a_blob_whose_bytes_are_gone_is_none(service, store, blobs):
    digest = Digest.of(b"collected")
    service.push_blob(OTHER, digest, [b"collected"])
    blobs.delete(digest)
    assert service.mount_blob_from_any(APP, digest, Asked(OTHER)) is None
    assert store.linked_blob(APP, digest) is None


def test_mount_without_from_of_a_blob_the_target_holds_is_that_blob(service, store):
    digest = Digest.of(b"already here")
    service.push_blob(APP, digest, [b"already here"])
    assert service.mount_blob_from_any(APP, digest, Asked(APP)) == BlobInfo(digest, 12)
    assert store.blob_holders(digest) == [APP]


def test_deleted_blob_is_unlinked_from_that_repository_only(service, store, blobs):
    digest = Digest.of(b"layer")
    service.push_blob(APP, digest, [b"layer"])
    service.push_blob(OTHER, digest, [b"layer"])
    service.delete_blob(APP, digest)
    assert store.linked_blob(APP, digest) is None
    assert store.linked_blob(OTHER, digest) is not None
    assert digest in blobs.blobs  # bytes go only by garbage collection
    with pytest.raises(BlobUnknown):
        service.delete_blob(APP, digest)


# --- manifests -----------------------------------------------------------------------------------------
def test_pushed_manifest_is_stored_byte_exact_and_tagged(service, store):
    body = push_image(service, tag="v1")
    digest = Digest.of(body)
    stored = store.get_manifest(APP, digest)
    assert stored.content == body and stored.size == len(body) and stored.media_type == OCI_MANIFEST
    assert store.list_tags(APP, None, 10) == ["v1"]
    assert store.references[(APP.value, digest)][0] == {Digest.of(b"{}"), Digest.of(b"layer")}


def test_put_manifest_reports_digest_tags_and_subject(service):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    subject = Digest.of(b"some subject")
    body = image(subject={"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 12})
    pushed = service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST, extra_tags=["v1.0", "stable"])
    assert pushed.digest == Digest.of(body)
    assert pushed.tags == ("v1", "v1.0", "stable")
    assert pushed.subject == subject


def test_extra_tags_all_point_at_the_manifest(service, store):
    body = push_image(service, tag="v1")
    service.put_manifest(APP, ref(str(Digest.of(body))), body, OCI_MANIFEST, extra_tags=["a", "b"])
    assert store.list_tags(APP, None, 10) == ["a", "b", "v1"]
    assert {store.tagged_manifest(APP, Tag(t)).digest for t in ("a", "b", "v1")} == {Digest.of(body)}


def test_an_invalid_extra_tag_stores_nothing(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    body = image()
    with pytest.raises(TagInvalid):
        service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST, extra_tags=["-bad"])
    assert store.get_manifest(APP, Digest.of(body)) is None
    assert store.list_tags(APP, None, 10) == []


def test_manifest_pushed_by_digest_has_no_tag(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    body = image()
    pushed = service.put_manifest(APP, ref(str(Digest.of(body))), body, OCI_MANIFEST)
    assert pushed.tags == ()
    assert store.get_manifest(APP, Digest.of(body)) is not None
    assert store.list_tags(APP, None, 10) == []


def test_manifest_pushed_by_sha512_digest_is_stored_under_it(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    body = image()
    digest = Digest.of(body, "sha512")
    assert service.put_manifest(APP, ref(str(digest)), body, OCI_MANIFEST).digest == digest
    assert store.get_manifest(APP, digest).content == body


def test_manifest_whose_digest_differs_from_the_reference_is_refused(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    with pytest.raises(DigestInvalid):
        service.put_manifest(APP, ref(str(Digest.of(b"not the body"))), image(), OCI_MANIFEST)
    assert store.list_repositories(None, 10) == []


def test_manifest_referencing_a_missing_blob_is_refused(service, store):
    service.push_blob(APP, Digest.of(b"{}"), [b"{}"])
    body = image(layers=(b"never pushed",))
    with pytest.raises(ManifestBlobUnknown):
        service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST)
    assert store.get_manifest(APP, Digest.of(body)) is None
    assert store.list_tags(APP, None, 10) == []


def test_manifest_referencing_a_blob_of_another_repository_is_refused(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(OTHER, Digest.of(data), [data])
    with pytest.raises(ManifestBlobUnknown):
        service.put_manifest(APP, ref("v1"), image(), OCI_MANIFEST)
    assert store.list_repositories(None, 10) == []


def test_manifest_with_a_wrong_blob_size_is_refused(service, store):
    for data in (b"{}", b"layer"):
        service.push_blob(APP, Digest.of(data), [data])
    document = json.loads(image())
    document["layers"][0]["size"] = 999
    body = json.dumps(document).encode()
    with pytest.raises(ManifestInvalid):
        service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST)
    assert store.get_manifest(APP, Digest.of(body)) is None


def test_every_descriptor_of_a_shared_digest_must_have_the_right_size(service, store):
    # The config and a layer may be the same blob; each descriptor's size is checked, not only the last one's.
    service.push_blob(APP, Digest.of(b"same"), [b"same"])
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**descriptor(CONFIG_TYPE, b"same"), "size": 999},
        "layers": [descriptor(LAYER_TYPE, b"same")],
    }
    body = json.dumps(document).encode()
    with pytest.raises(ManifestInvalid):
        service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST)
    assert store.get_manifest(APP, Digest.of(body)) is None


def test_foreign_layers_need_not_be_pushed(service, store):
    service.push_blob(APP, Digest.of(b"{}"), [b"{}"])
    foreign = descriptor(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", b"windows base", urls=["https://example.com/l"]
    )
    document = json.loads(image(layers=()))
    document["layers"] = [foreign]
    body = json.dumps(document).encode()
    service.put_manifest(APP, ref("v1"), body, OCI_MANIFEST)
    assert store.get_manifest(APP, Digest.of(body)) is not None


def test_too_large_manifest_is_refused(store, blobs):
    service = RegistryService(store, blobs, FixedClock(), max_manifest_bytes=100)
    with pytest.raises(PayloadTooLarge):
        service.put_manifest(APP, ref("v1"), b" " * 101, OCI_MANIFEST)
    assert store.repositories == {}


def test_invalid_manifest_is_refused(service, store):
    with pytest.raises(ManifestInvalid):
        service.put_manifest(APP, ref("v1"), b"not json", OCI_MANIFEST)
    assert store.repositories == {}


def test_index_needs_its_children_in_the_repository(service, store):
    child = push_image(service, tag="amd64")
    missing = b'{"not": "pushed"}'
    body = index(child, missing)
    with pytest.raises(ManifestBlobUnknown) as caught:
        service.put_manifest(APP, ref("multi"), body, OCI_INDEX)
    assert caught.value.detail == {"digest": str(Digest.of(missing))}
    assert store.get_manifest(APP, Digest.of(body)) is None
    assert store.list_tags(APP, None, 10) == ["amd64"]


def test_index_of_children_of_another_repository_is_refused(service):
    child = push_image(service, name=OTHER)
    with pytest.raises(ManifestBlobUnknown):
        service.put_manifest(APP, ref("multi"), index(child), OCI_INDEX)


def test_index_with_its_children_present_is_stored_with_its_references(service, store):
    amd64 = push_image(service, tag="amd64", layers=(b"amd64 layer",))
    arm64 = push_image(service, tag="arm64", layers=(b"arm64 layer",))
    body = index(amd64, arm64)
    service.put_manifest(APP, ref("multi"), body, OCI_INDEX)
    assert store.tagged_manifest(APP, Tag("multi")).media_type == OCI_INDEX
    assert store.references[(APP.value, Digest.of(body))] == (frozenset(), {Digest.of(amd64), Digest.of(arm64)})


def test_pushing_the_same_manifest_again_is_idempotent_and_can_add_a_tag(service, store):
    body = push_image(service, tag="v1")
    service.put_manifest(APP, ref("v2"), body, OCI_MANIFEST)
    assert list(store.manifests[APP.value]) == [Digest.of(body)]
    assert store.list_tags(APP, None, 10) == ["v1", "v2"]


def test_a_tag_moves_to_the_newest_manifest(service, store):
    first = push_image(service, tag="latest", layers=(b"one",))
    second = push_image(service, tag="latest", layers=(b"two",))
    assert store.tagged_manifest(APP, Tag("latest")).digest == Digest.of(second)
    assert store.get_manifest(APP, Digest.of(first)) is not None  # untagged, not deleted


# --- pull ----------------------------------------------------------------------------------------------
def test_manifest_is_found_by_tag_and_by_digest(service):
    body = push_image(service, tag="v1")
    assert service.get_manifest(APP, ref("v1")).content == body
    assert service.get_manifest(APP, ref(str(Digest.of(body)))).content == body


def test_manifest_of_an_unknown_repository_is_name_unknown(service):
    with pytest.raises(NameUnknown):
        service.get_manifest(APP, ref("v1"))
    with pytest.raises(NameUnknown):
        service.get_manifest(APP, ref(str(Digest.of(b"x"))))


def test_unknown_reference_in_a_known_repository_is_manifest_unknown(service):
    body = push_image(service, tag="v1")
    with pytest.raises(ManifestUnknown):
        service.get_manifest(APP, ref("v2"))
    with pytest.raises(ManifestUnknown):
        service.get_manifest(APP, ref(str(Digest.of(body + b" "))))
    with pytest.raises(ManifestUnknown):
        service.get_manifest(APP, ref(str(Digest.of(body, "sha512"))))  # stored under its sha256 only


def test_manifest_of_another_repository_is_not_found_here(service):
    body = push_image(service, name=OTHER, tag="v1")
    service.start_upload(APP, ALICE)  # the repository exists, without manifests
    with pytest.raises(ManifestUnknown):
        service.get_manifest(APP, ref(str(Digest.of(body))))


# --- deletion ------------------------------------------------------------------------------------------
def test_delete_by_digest_removes_the_manifest_and_all_its_tags(service, store):
    body = push_image(service, tag="v1")
    other = push_image(service, tag="other", layers=(b"other layer",))
    service.put_manifest(APP, ref("v1.0"), body, OCI_MANIFEST)
    service.delete_manifest(APP, ref(str(Digest.of(body))))
    assert store.get_manifest(APP, Digest.of(body)) is None
    assert store.list_tags(APP, None, 10) == ["other"]
    assert store.tagged_manifest(APP, Tag("other")).digest == Digest.of(other)
    with pytest.raises(ManifestUnknown):
        service.get_manifest(APP, ref("v1"))
    with pytest.raises(ManifestUnknown):
        service.delete_manifest(APP, ref(str(Digest.of(body))))


def test_delete_by_tag_removes_only_the_tag(service, store):
    body = push_image(service, tag="v1")
    service.put_manifest(APP, ref("v1.0"), body, OCI_MANIFEST)
    service.delete_manifest(APP, ref("v1"))
    assert store.get_manifest(APP, Digest.of(body)) is not None
    assert store.list_tags(APP, None, 10) == ["v1.0"]
    with pytest.raises(ManifestUnknown):
        service.delete_manifest(APP, ref("v1"))


def test_delete_in_an_unknown_repository_is_name_unknown(service):
    with pytest.raises(NameUnknown):
        service.delete_manifest(APP, ref("v1"))
    with pytest.raises(NameUnknown):
        service.delete_blob(APP, Digest.of(b"anything"))


def test_repository_whose_last_manifest_is_deleted_leaves_the_catalog(service):
    body = push_image(service)
    service.delete_manifest(APP, ref(str(Digest.of(body))))
    assert service.list_repositories(None, None, lambda name: True) == Page([], False)


# --- discovery -----------------------------------------------------------------------------------------
@pytest.fixture
def tagged(service):
    """APP with tags pushed out of order, including ones that sort differently by bytes than by case-folding."""
    body = push_image(service, tag="v1")
    for tag in ("b", "a", "C", "_x", "a1", "v10", "v2"):
        service.put_manifest(APP, ref(tag), body, OCI_MANIFEST)
    return ["C", "_x", "a", "a1", "b", "v1", "v10", "v2"]


def test_tags_are_listed_in_byte_order(service, tagged):
    assert service.list_tags(APP, None, None) == Page(tagged, False)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9])
def test_tags_page_through_with_last_and_has_more(service, tagged, n):
    seen, last = [], None
    while True:
        page = service.list_tags(APP, last, n)
        assert len(page.items) <= n
        seen += page.items
        if not page.has_more:
            break
        last = page.items[-1]
    assert seen == tagged


def test_tag_page_reports_more_only_when_there_is_more(service, tagged):
    assert service.list_tags(APP, None, 8) == Page(tagged, False)
    assert service.list_tags(APP, None, 7) == Page(tagged[:7], True)
    assert service.list_tags(APP, "v1", 5) == Page(["v10", "v2"], False)
    assert service.list_tags(APP, "v2", 5) == Page([], False)
    assert service.list_tags(APP, "Z", 2) == Page(["_x", "a"], True)  # a `last` that is not a tag
    assert service.list_tags(APP, None, 0) == Page([], False)


def test_tags_of_an_unknown_repository_are_name_unknown(service):
    with pytest.raises(NameUnknown):
        service.list_tags(APP, None, None)


def test_repository_without_tags_lists_none(service):
    service.start_upload(APP, ALICE)
    assert service.list_tags(APP, None, None) == Page([], False)


@pytest.fixture
def catalog(service):
    """Twelve repositories with manifests, and one with only blobs, which the catalog does not list."""
    names = [f"r{i:02d}" for i in range(12)]
    for name in names:
        push_image(service, name=RepositoryName.parse(name))
    service.push_blob(RepositoryName.parse("blobs-only"), Digest.of(b"x"), [b"x"])
    return names


def test_catalog_lists_repositories_holding_a_manifest(service, catalog):
    assert service.list_repositories(None, None, lambda name: True) == Page(catalog, False)


def test_catalog_filters_invisible_repositories_across_several_store_batches(service, catalog):
    # With n=2 the service reads batches of three names; the first batch (r00-r02) holds one visible name only.
    visible = {"r01", "r07", "r08", "r11"}
    assert service.list_repositories(None, 2, visible.__contains__) == Page(["r01", "r07"], True)
    assert service.list_repositories("r07", 2, visible.__contains__) == Page(["r08", "r11"], False)
    assert service.list_repositories("r08", 1, visible.__contains__) == Page(["r11"], False)
    assert service.list_repositories("r11", 1, visible.__contains__) == Page([], False)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_catalog_pages_through_every_visible_repository_exactly_once(service, catalog, n):
    visible = {name for i, name in enumerate(catalog) if i % 3 != 1}
    seen, last = [], None
    while True:
        page = service.list_repositories(last, n, visible.__contains__)
        assert len(page.items) <= n
        seen += page.items
        if not page.has_more:
            break
        last = page.items[-1]
    assert seen == sorted(visible)


def test_catalog_with_nothing_visible_is_empty(service, catalog):
    assert service.list_repositories(None, 3, lambda name: False) == Page([], False)
    assert service.list_repositories(None, 0, lambda name: True) == Page([], False)


# --- referrers -----------------------------------------------------------------------------------------
def test_referrers_list_manifests_whose_subject_is_the_digest_filtered_by_artifact_type(service):
    subject_body = push_image(service, tag="v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": str(Digest.of(subject_body)), "size": len(subject_body)}
    signature = push_image(
        service,
        tag="sig",
        config=b'{"sig": 1}',
        layers=(b"signature",),
        subject=subject,
        artifactType="application/vnd.example.signature",
        annotations={"org.example.signed-by": "alice"},
    )
    sbom = push_image(service, tag="sbom", config=b'{"sbom": 1}', layers=(b"sbom",), subject=subject)
    push_image(service, tag="unrelated", layers=(b"unrelated",))

    everything = service.referrers(APP, Digest.of(subject_body))
    assert sorted(everything, key=lambda d: d["digest"]) == everything
    by_digest = {d["digest"]: d for d in everything}
    assert set(by_digest) == {str(Digest.of(signature)), str(Digest.of(sbom))}
    assert by_digest[str(Digest.of(signature))] == {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(signature)),
        "size": len(signature),
        "artifactType": "application/vnd.example.signature",
        "annotations": {"org.example.signed-by": "alice"},
    }
    assert by_digest[str(Digest.of(sbom))]["artifactType"] == CONFIG_TYPE  # the config's type stands in

    signatures = service.referrers(APP, Digest.of(subject_body), "application/vnd.example.signature")
    assert [d["digest"] for d in signatures] == [str(Digest.of(signature))]
    assert service.referrers(APP, Digest.of(subject_body), "application/vnd.example.none") == []


def test_referrers_of_an_unknown_subject_or_repository_are_empty(service):
    push_image(service)
    assert service.referrers(APP, Digest.of(b"nothing refers")) == []
    assert service.referrers(OTHER, Digest.of(b"nothing refers")) == []

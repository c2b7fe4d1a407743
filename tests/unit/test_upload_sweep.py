"""`stevedore upload sweep`'s rules over the in-memory fakes: every account's sessions started more than the limit
ago go (rows, then bytes), younger ones stay; and fsck's rule for S3's incomplete multipart uploads with no session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stevedore.domain import registry
from stevedore.domain.errors import UploadUnknown
from stevedore.domain.fsck import (
    DatabaseView,
    FindingKind,
    StorageView,
    StoredMultipartUpload,
    check,
    orphan_multipart_uploads,
)
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.registry import RegistryService
from tests.fakes import FixedClock, InMemoryBlobStore, InMemoryRegistryStore

APP = RepositoryName.parse("team/app")
OTHER = RepositoryName.parse("other/lib")
ALICE, BOB = 1, 2


@pytest.fixture
def store():
    return InMemoryRegistryStore()


@pytest.fixture
def blobs():
    return InMemoryBlobStore()


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def service(store, blobs, clock):
    return RegistryService(store, blobs, clock)


def session_of(upload_id: str) -> str:
    """The session id a ticket names (its first part): the key of the session's row and of its bytes."""
    return upload_id.split(".")[0]


def open_upload(service, name=APP, account_id=ALICE) -> str:
    """A POST's ticket whose session a first (empty) chunk opened: it has a row, which a sweep can take."""
    upload_id = service.start_upload(name, account_id)
    service.append_upload(name, upload_id, account_id, [b""])
    return upload_id


def test_every_account_s_old_sessions_are_swept_and_young_ones_kept(service, store, blobs, clock):
    old = [open_upload(service, APP, ALICE), open_upload(service, OTHER, BOB), open_upload(service, APP, None)]
    service.append_upload(APP, old[0], ALICE, [b"never finished"])
    clock.advance(seconds=1800)
    young = open_upload(service, APP, ALICE)
    clock.advance(seconds=1801)  # the old ones are 3601 seconds old, the young one 1801

    swept = service.sweep_abandoned_uploads(3600)

    old_sessions = {session_of(u) for u in old}
    assert sorted(swept) == sorted(old_sessions)
    assert set(store.uploads) == {session_of(young)}
    assert set(blobs.uploads) == old_sessions | {session_of(young)}  # the bytes wait for the rows' commit
    service.abort_upload_bytes(swept)
    assert set(blobs.uploads) == {session_of(young)}
    assert all(store.upload_closed(session) for session in old_sessions)
    with pytest.raises(UploadUnknown):
        service.append_upload(APP, old[0], ALICE, [b"too late"])
    assert service.append_upload(APP, young, ALICE, [b"still going"]) == len(b"still going")


def test_a_session_exactly_as_old_as_the_limit_is_kept(service, store, clock):
    upload = open_upload(service)
    clock.advance(seconds=3600)
    assert service.sweep_abandoned_uploads(3600) == []
    assert set(store.uploads) == {session_of(upload)}
    assert not store.upload_closed(session_of(upload))


def test_now_may_be_given(service, store, clock):
    upload = open_upload(service)
    later = clock.now() + timedelta(seconds=61)
    assert service.sweep_abandoned_uploads(60, now=later) == [session_of(upload)]
    assert store.uploads == {}
    assert store.closed_uploads == {session_of(upload): later}


def test_a_finish_that_deleted_the_row_first_is_not_swept(service, store, blobs, clock):
    upload = service.start_upload(APP, ALICE)  # opened by its first bytes
    service.append_upload(APP, upload, ALICE, [b"layer"])
    clock.advance(seconds=7200)
    info = service.finish_upload(APP, upload, ALICE, Digest.of(b"layer"))

    swept = service.sweep_abandoned_uploads(3600)
    service.abort_upload_bytes(swept)

    assert swept == []
    assert blobs.blobs[info.digest] == b"layer"
    assert store.linked_blob(APP, info.digest) is not None


def test_a_negative_limit_is_refused(service):
    with pytest.raises(ValueError):
        service.sweep_abandoned_uploads(-1)


# --- S3's incomplete multipart uploads ---------------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def multipart(upload_id: str, minutes: int) -> StoredMultipartUpload:
    return StoredMultipartUpload(upload_id, f"objects/{upload_id}", f"s3-{upload_id}", T0 + timedelta(minutes=minutes))


def test_fsck_reports_a_multipart_upload_without_a_session_as_a_stale_upload():
    database = DatabaseView(blobs=[], links=[], manifests=[], tags=[], upload_ids={"open"})
    storage = StorageView([], [], multipart_uploads=[multipart("open", 0), multipart("orphan", 5)])

    report = check(database, storage)

    stale = report.of_kind(FindingKind.STALE_UPLOAD)
    assert [finding.subject for finding in stale] == ["orphan"]
    assert "incomplete multipart upload at objects/orphan started 2026-01-01 00:05:00" in stale[0].detail
    assert not report.consistent


def test_orphans_are_those_without_a_session_started_before_the_limit_oldest_first():
    storage = StorageView(
        [], [], multipart_uploads=[multipart("young", 50), multipart("open", 0), multipart("b", 10), multipart("a", 20)]
    )
    assert [m.upload_id for m in orphan_multipart_uploads(storage, {"open"})] == ["b", "a", "young"]
    limited = orphan_multipart_uploads(storage, {"open"}, started_before=T0 + timedelta(minutes=30))
    assert [m.upload_id for m in limited] == ["b", "a"]


def test_a_finish_whose_session_was_swept_meanwhile_records_no_blob():
    """The sweep deleted the row (and will abort the bytes) while the finish was verifying them: the finish must not
    leave a blob row whose bytes are about to go."""
    store, blobs = InMemoryRegistryStore(), InMemoryBlobStore()
    service = RegistryService(store, blobs, FixedClock())
    name = RepositoryName.parse("ada/app")
    upload_id = open_upload(service, name, None)  # a row, which the sweep can take
    real_finish = blobs.finish

    def finish_while_swept(upload_id, digest, chunks=(), *, place=True):
        info = real_finish(upload_id, digest, chunks, place=place)
        store.delete_upload(upload_id)  # the sweep's DELETE, committed in the meantime
        return info

    blobs.finish = finish_while_swept  # type: ignore[method-assign]
    with pytest.raises(UploadUnknown, match="swept"):
        service.finish_upload(name, upload_id, None, Digest.of(b"late"), [b"late"])


def test_a_swept_session_s_ticket_is_spent(service, store, blobs, clock):
    """Swept a minute after it opened, the session's ticket is still within its lifetime (an hour): only the
    tombstone keeps it from opening a new session under the same id."""
    upload = open_upload(service)
    service.append_upload(APP, upload, ALICE, [b"some bytes"])
    clock.advance(seconds=61)
    swept = service.sweep_abandoned_uploads(60)
    service.abort_upload_bytes(swept)
    assert swept == [session_of(upload)]
    assert store.upload_closed(session_of(upload))
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, upload, ALICE)
    with pytest.raises(UploadUnknown):
        service.append_upload(APP, upload, ALICE, [b"again"])
    with pytest.raises(UploadUnknown):
        service.finish_upload(APP, upload, ALICE, Digest.of(b"whole"), [b"whole"])
    with pytest.raises(UploadUnknown):
        service.cancel_upload(APP, upload, ALICE)
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {}


def test_a_sweep_leaves_fresh_tickets_alone(service, store, clock):
    upload = service.start_upload(APP, ALICE)
    clock.advance(seconds=61)
    assert service.sweep_abandoned_uploads(60) == []
    assert not store.upload_closed(session_of(upload))
    assert service.upload_status(APP, upload, ALICE) == 0


@pytest.mark.parametrize(("abandoned", "lifetime"), [(3600, 3600), (0, 7 * 24 * 3600)])
def test_a_sweep_prunes_tombstones_older_than_twice_the_ticket_lifetime(
    store, blobs, clock, monkeypatch, abandoned, lifetime
):
    monkeypatch.setattr(registry, "PRUNE_CLOSED_UPLOADS_CHANCE", 0.0)  # only the sweep prunes here
    service = RegistryService(store, blobs, clock, abandoned_upload_seconds=abandoned)
    old = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, old, ALICE)
    clock.advance(seconds=1)
    exact = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, exact, ALICE)
    # Tombstones are kept TOMBSTONE_SLACK lifetimes (the nodes' clocks differ): `old` was closed that + 1 second
    # ago, `exact` exactly that long ago.
    clock.advance(seconds=registry.TOMBSTONE_SLACK * lifetime)
    young = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, young, ALICE)

    service.sweep_abandoned_uploads(24 * 3600)

    assert set(store.closed_uploads) == {session_of(exact), session_of(young)}
    clock.advance(seconds=1)  # now `exact` too is older than the lifetime
    service.sweep_abandoned_uploads(24 * 3600)
    assert set(store.closed_uploads) == {session_of(young)}

"""`stevedore upload sweep`'s rules over the in-memory fakes: every account's sessions started more than the limit
ago go (rows, then bytes), younger ones stay; and fsck's rule for S3's incomplete multipart uploads with no session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def test_every_account_s_old_sessions_are_swept_and_young_ones_kept(service, store, blobs, clock):
    old = [service.start_upload(APP, ALICE), service.start_upload(OTHER, BOB), service.start_upload(APP, None)]
    service.append_upload(APP, old[0], ALICE, [b"never finished"])
    clock.advance(seconds=1800)
    young = service.start_upload(APP, ALICE)
    clock.advance(seconds=1801)  # the old ones are 3601 seconds old, the young one 1801

    swept = service.sweep_abandoned_uploads(3600)

    assert sorted(swept) == sorted(old)
    assert set(store.uploads) == {young}
    assert set(blobs.uploads) == set(old) | {young}  # the bytes wait for the rows' commit
    service.abort_upload_bytes(swept)
    assert set(blobs.uploads) == {young}
    with pytest.raises(UploadUnknown):
        service.append_upload(APP, old[0], ALICE, [b"too late"])
    assert service.append_upload(APP, young, ALICE, [b"still going"]) == len(b"still going")


def test_a_session_exactly_as_old_as_the_limit_is_kept(service, store, clock):
    upload = service.start_upload(APP, ALICE)
    clock.advance(seconds=3600)
    assert service.sweep_abandoned_uploads(3600) == []
    assert set(store.uploads) == {upload}


def test_now_may_be_given(service, store, clock):
    upload = service.start_upload(APP, ALICE)
    assert service.sweep_abandoned_uploads(60, now=clock.now() + timedelta(seconds=61)) == [upload]
    assert store.uploads == {}


def test_a_finish_that_deleted_the_row_first_is_not_swept(service, store, blobs, clock):
    upload = service.start_upload(APP, ALICE)
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
    upload_id = service.start_upload(name, None)
    real_finish = blobs.finish

    def finish_while_swept(upload_id, digest, chunks=()):
        info = real_finish(upload_id, digest, chunks)
        store.delete_upload(upload_id)  # the sweep's DELETE, committed in the meantime
        return info

    blobs.finish = finish_while_swept  # type: ignore[method-assign]
    with pytest.raises(UploadUnknown, match="swept"):
        service.finish_upload(name, upload_id, None, Digest.of(b"late"), [b"late"])

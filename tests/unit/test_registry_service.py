"""RegistryService over the in-memory fakes: pushes, pulls, discovery and deletion, asserted on the stores' state."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime

import pytest

from stevedore.domain import registry
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
from stevedore.domain.registry import Page, RegistryService, UploadSession
from stevedore.domain.upload_tickets import UploadTickets
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


def session_of(upload_id: str) -> str:
    """The session id a ticket names (its first part): the key of the session's row and of its bytes."""
    return upload_id.split(".")[0]


def open_upload(service, name=APP, account_id=ALICE) -> str:
    """A session opened as a PATCH opens one: a POST's ticket and a first (empty) chunk, which writes its row."""
    upload_id = service.start_upload(name, account_id)
    service.append_upload(name, upload_id, account_id, [b""])
    return upload_id


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
    assert store.uploads == {} and blobs.uploads == {}
    assert store.upload_closed(session_of(upload_id))
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, upload_id, ALICE)


def test_a_started_upload_records_nothing_until_its_first_bytes(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE, "sha512")
    assert store.uploads == {} and blobs.uploads == {} and store.closed_uploads == {}
    assert not store.repository_exists(APP)
    assert service.upload_status(APP, upload_id, ALICE) == 0
    assert store.uploads == {} and blobs.uploads == {}

    assert service.append_upload(APP, upload_id, ALICE, [b"first"], start=0) == 5
    session = store.get_upload(session_of(upload_id))
    assert (session.repository, session.account_id, session.digest_algorithm) == (APP, ALICE, "sha512")
    assert session.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert store.repository_exists(APP)
    assert set(store.uploads) == {session_of(upload_id)}
    assert bytes(blobs.uploads[session_of(upload_id)]) == b"first"
    assert service.upload_status(APP, upload_id, ALICE) == 5


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
    assert bytes(blobs.uploads[session_of(upload_id)]) == b"abc"


def test_finish_with_wrong_digest_keeps_the_upload_for_a_retry(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    service.append_upload(APP, upload_id, ALICE, [b"content"])
    with pytest.raises(DigestInvalid):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"other"))
    assert store.get_upload(session_of(upload_id)) is not None
    assert bytes(blobs.uploads[session_of(upload_id)]) == b"content"
    assert store.linked_blob(APP, Digest.of(b"content")) is None
    service.finish_upload(APP, upload_id, ALICE, Digest.of(b"content"))
    assert store.linked_blob(APP, Digest.of(b"content")) is not None


@pytest.mark.parametrize(
    ("name", "account_id"),
    [(APP, BOB), (APP, None), (OTHER, ALICE)],
    ids=["another-account", "anonymous", "another-repository"],
)
def test_an_upload_belongs_to_its_account_and_repository(service, store, blobs, name, account_id):
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
    assert bytes(blobs.uploads[session_of(upload_id)]) == b"mine"
    assert not store.upload_closed(session_of(upload_id))
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
    assert store.uploads == {} and blobs.uploads == {}
    assert store.upload_closed(session_of(upload_id))
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


# --- tickets: a POST writes nothing; the first bytes open the session --------------------------------------
def test_a_whole_body_put_on_a_fresh_ticket_records_the_blob_and_no_session(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    digest = Digest.of(b"small layer")
    assert service.finish_upload(APP, upload_id, ALICE, digest, [b"small ", b"layer"]) == BlobInfo(digest, 11)
    assert blobs.blobs[digest] == b"small layer"
    assert store.linked_blob(APP, digest) == BlobInfo(digest, 11)
    assert store.uploads == {} and blobs.uploads == {}
    assert set(store.closed_uploads) == {session_of(upload_id)}
    assert_unknown(service, APP, upload_id, ALICE)
    assert store.uploads == {} and blobs.uploads == {}


def test_an_empty_blob_needs_no_session_either(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    assert service.finish_upload(APP, upload_id, ALICE, Digest.of(b"")) == BlobInfo(Digest.of(b""), 0)
    assert store.uploads == {} and blobs.uploads == {}
    assert_unknown(service, APP, upload_id, ALICE)


def assert_unknown(service, name, upload_id, account_id):
    """The upload is BLOB_UPLOAD_UNKNOWN for GET, PATCH, PUT and DELETE alike."""
    with pytest.raises(UploadUnknown):
        service.upload_status(name, upload_id, account_id)
    with pytest.raises(UploadUnknown):
        service.append_upload(name, upload_id, account_id, [b"more"])
    with pytest.raises(UploadUnknown):
        service.finish_upload(name, upload_id, account_id, Digest.of(b"more"), [b"more"])
    with pytest.raises(UploadUnknown):
        service.cancel_upload(name, upload_id, account_id)


def test_a_cancelled_fresh_ticket_is_unknown_afterwards(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, upload_id, ALICE)
    assert store.uploads == {} and blobs.uploads == {}
    assert set(store.closed_uploads) == {session_of(upload_id)}
    assert_unknown(service, APP, upload_id, ALICE)
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {}
    assert not store.repository_exists(APP)


@pytest.mark.parametrize(("abandoned", "lifetime"), [(3600, 3600), (60, 60), (0, 7 * 24 * 3600)])
def test_a_fresh_ticket_expires_after_its_lifetime(store, blobs, clock, abandoned, lifetime):
    service = RegistryService(store, blobs, clock, abandoned_upload_seconds=abandoned)
    assert service.ticket_lifetime_seconds == lifetime
    upload_id = service.start_upload(APP, ALICE)
    clock.advance(seconds=lifetime - 1)
    assert service.upload_status(APP, upload_id, ALICE) == 0
    clock.advance(seconds=1)
    assert_unknown(service, APP, upload_id, ALICE)
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {}


def test_the_default_ticket_lifetime_is_an_hour(service):
    assert service.ticket_lifetime_seconds == 3600


def test_an_opened_session_does_not_expire_by_its_ticket(store, blobs, clock):
    service = RegistryService(store, blobs, clock, abandoned_upload_seconds=60)
    upload_id = service.start_upload(APP, ALICE)
    clock.advance(seconds=59)
    service.append_upload(APP, upload_id, ALICE, [b"opened "])  # just in time
    clock.advance(days=3)
    assert service.upload_status(APP, upload_id, ALICE) == 7
    assert service.append_upload(APP, upload_id, ALICE, [b"long "], start=7) == 12
    digest = Digest.of(b"opened long ago")
    assert service.finish_upload(APP, upload_id, ALICE, digest, [b"ago"]) == BlobInfo(digest, 15)
    assert store.uploads == {} and blobs.uploads == {}


def test_a_first_chunk_that_does_not_start_at_zero_is_refused_and_writes_nothing(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    with pytest.raises(RangeInvalid):
        service.append_upload(APP, upload_id, ALICE, [b"later bytes"], start=5)
    with pytest.raises(RangeInvalid):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"later bytes"), [b"later bytes"], start=5)
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {} and store.closed_uploads == {}
    assert not store.repository_exists(APP)
    assert service.upload_status(APP, upload_id, ALICE) == 0  # the ticket is still good
    assert service.append_upload(APP, upload_id, ALICE, [b"first"], start=0) == 5


def test_a_wrong_digest_on_a_fresh_ticket_leaves_nothing_and_the_ticket_usable(service, store, blobs):
    upload_id = service.start_upload(APP, ALICE)
    with pytest.raises(DigestInvalid):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"claimed"), [b"actual"])
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {} and store.blobs == {}
    assert store.closed_uploads == {}
    assert service.upload_status(APP, upload_id, ALICE) == 0
    assert service.finish_upload(APP, upload_id, ALICE, Digest.of(b"actual"), [b"actual"]) == BlobInfo(
        Digest.of(b"actual"), 6
    )
    assert store.uploads == {} and blobs.uploads == {}


@pytest.mark.parametrize(
    ("name", "account_id"),
    [(APP, BOB), (APP, None), (OTHER, ALICE)],
    ids=["another-account", "anonymous", "another-repository"],
)
def test_a_fresh_ticket_belongs_to_its_account_and_repository(service, store, blobs, name, account_id):
    upload_id = service.start_upload(APP, ALICE)
    assert_unknown(service, name, upload_id, account_id)
    assert store.uploads == {} and blobs.uploads == {} and blobs.blobs == {} and store.closed_uploads == {}
    assert service.upload_status(APP, upload_id, ALICE) == 0


def test_an_anonymous_ticket_is_unknown_to_an_account(service):
    upload_id = service.start_upload(APP, None)
    assert_unknown(service, APP, upload_id, ALICE)
    assert service.upload_status(APP, upload_id, None) == 0


@pytest.mark.parametrize("text", ["not-a-ticket", "a.b.c.d", "", "../escape"])
def test_what_is_no_ticket_is_unknown(service, store, blobs, text):
    assert_unknown(service, APP, text, ALICE)
    assert store.uploads == {} and blobs.uploads == {} and store.closed_uploads == {}


def test_a_ticket_of_another_server_key_is_unknown(store, blobs):
    issuer = RegistryService(store, blobs, FixedClock(), upload_tickets=UploadTickets(b"one key"))
    reader = RegistryService(store, blobs, FixedClock(), upload_tickets=UploadTickets(b"another key"))
    same = RegistryService(store, blobs, FixedClock(), upload_tickets=UploadTickets(b"one key"))
    upload_id = issuer.start_upload(APP, ALICE)
    assert_unknown(reader, APP, upload_id, ALICE)
    assert same.upload_status(APP, upload_id, ALICE) == 0  # every node with the key reads it


def test_a_plain_uuid_is_known_only_by_its_row(service, store, blobs, clock):
    """The ids older releases handed out: their row (and bytes) must exist, and says whose they are."""
    plain = str(uuid.uuid4())
    assert_unknown(service, APP, plain, ALICE)
    store.add_upload(UploadSession(plain, APP, ALICE, "sha256", clock.now()))
    blobs.start_upload(plain)
    assert service.append_upload(APP, plain, ALICE, [b"old "]) == 4
    assert service.upload_status(APP, plain, ALICE) == 4
    with pytest.raises(UploadUnknown):
        service.upload_status(APP, plain, BOB)
    with pytest.raises(UploadUnknown):
        service.upload_status(OTHER, plain, ALICE)
    digest = Digest.of(b"old style")
    assert service.finish_upload(APP, plain, ALICE, digest, [b"style"]) == BlobInfo(digest, 9)
    assert store.uploads == {} and blobs.uploads == {}
    assert_unknown(service, APP, plain, ALICE)


def test_the_first_bytes_commit_the_row_before_the_bytes_start(store, blobs):
    """The row is written in a unit of work of its own, committed before the blob store holds any byte of it, so a
    sweep or fsck never sees bytes no committed row owns; later chunks open nothing."""
    events: list = []

    @contextlib.contextmanager
    def upload_sessions():
        events.append("begin")
        try:
            yield store
        except BaseException:
            events.append("rollback")
            raise
        events.append(("commit", set(store.uploads)))

    real_start = blobs.start_upload

    def start_upload(upload_id, digest_algorithm="sha256"):
        events.append(("bytes", upload_id))
        real_start(upload_id, digest_algorithm)

    blobs.start_upload = start_upload
    service = RegistryService(
        store, blobs, FixedClock(), max_open_uploads_per_account=1, upload_sessions=upload_sessions
    )
    upload_id, second = service.start_upload(APP, ALICE), service.start_upload(APP, ALICE)
    assert events == []
    service.append_upload(APP, upload_id, ALICE, [b"a"])
    session = session_of(upload_id)
    assert events == ["begin", ("commit", {session}), ("bytes", session)]
    service.append_upload(APP, upload_id, ALICE, [b"b"])
    assert len(events) == 3
    # Past the cap, the unit of work is rolled back and no bytes are started.
    events.clear()
    with pytest.raises(TooManyUploads):
        service.append_upload(APP, second, ALICE, [b"c"])
    assert events == ["begin", "rollback"]
    assert set(store.uploads) == set(blobs.uploads) == {session}


def test_a_fresh_ticket_cancelled_while_its_whole_body_is_verified_records_nothing_for_good(service, store, blobs):
    """A DELETE spent the ticket while the PUT verified its body: the PUT must fail (its transaction then rolls back
    the blob's row), not report a blob whose session was cancelled."""
    upload_id = service.start_upload(APP, ALICE)
    real_finish = blobs.finish

    def finish_while_cancelled(session_id, digest, chunks=(), *, place=True):
        info = real_finish(session_id, digest, chunks, place=place)
        service.cancel_upload(APP, upload_id, ALICE)  # the DELETE, committed in the meantime
        return info

    blobs.finish = finish_while_cancelled
    with pytest.raises(UploadUnknown, match="cancelled"):
        service.finish_upload(APP, upload_id, ALICE, Digest.of(b"body"), [b"body"])
    assert store.uploads == {}


@pytest.mark.parametrize(("chance", "pruned"), [(1.0, True), (0.0, False)])
def test_closing_a_session_now_and_then_prunes_expired_tombstones(store, blobs, clock, monkeypatch, chance, pruned):
    monkeypatch.setattr(registry, "PRUNE_CLOSED_UPLOADS_CHANCE", chance)
    service = RegistryService(store, blobs, clock)
    old = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, old, ALICE)
    clock.advance(seconds=registry.TOMBSTONE_SLACK * 3600 + 1)  # tombstones outlive tickets, for clock skew
    young = service.start_upload(APP, ALICE)
    service.cancel_upload(APP, young, ALICE)
    expected = {session_of(young)} if pruned else {session_of(old), session_of(young)}
    assert set(store.closed_uploads) == expected


# --- the cap on open uploads ----------------------------------------------------------------------------
# A session takes a slot when it is opened (its first bytes write its row), not when its ticket is handed out; but
# a POST while the account is already at the cap is refused at once (unless abandoned sessions can be reclaimed).
@pytest.fixture
def capped(store, blobs):
    return RegistryService(store, blobs, FixedClock(), max_open_uploads_per_account=3)


def test_a_post_at_the_cap_is_refused_and_leaves_nothing(capped, store, blobs):
    opened = [open_upload(capped) for _ in range(3)]
    with pytest.raises(TooManyUploads) as refused:
        capped.start_upload(OTHER, ALICE)
    assert "3 uploads are open" in refused.value.message and "DELETE" in refused.value.message
    assert refused.value.detail == {"open": 3, "limit": 3, "reclaimable_at": "2026-01-01T01:00:00+00:00"}
    assert refused.value.retry_after_seconds == 3600
    assert set(store.uploads) == set(blobs.uploads) == {session_of(u) for u in opened}
    assert not store.repository_exists(OTHER) and store.closed_uploads == {}


def test_first_bytes_past_the_cap_are_refused_and_leave_nothing(capped, store, blobs):
    upload_id = capped.start_upload(OTHER, ALICE)  # below the cap: a ticket costs no slot
    opened = [open_upload(capped) for _ in range(3)]
    with pytest.raises(TooManyUploads) as refused:
        capped.append_upload(OTHER, upload_id, ALICE, [b"first bytes"])
    assert "3 uploads are open" in refused.value.message and "DELETE" in refused.value.message
    assert refused.value.detail == {"open": 3, "limit": 3, "reclaimable_at": "2026-01-01T01:00:00+00:00"}
    assert set(store.uploads) == set(blobs.uploads) == {session_of(u) for u in opened}
    assert not store.repository_exists(OTHER)
    # The refused ticket is still good: once a slot is free, it opens.
    assert capped.upload_status(OTHER, upload_id, ALICE) == 0
    capped.cancel_upload(APP, opened[0], ALICE)
    assert capped.append_upload(OTHER, upload_id, ALICE, [b"first bytes"]) == 11
    assert store.get_upload(session_of(upload_id)).repository == OTHER


def test_tickets_alone_take_no_slot(capped, store, blobs):
    tickets = [capped.start_upload(APP, ALICE) for _ in range(10)]
    assert store.uploads == {} and blobs.uploads == {}
    for upload_id in tickets[:3]:
        capped.append_upload(APP, upload_id, ALICE, [b"x"])
    for upload_id in tickets[3:]:
        with pytest.raises(TooManyUploads):
            capped.append_upload(APP, upload_id, ALICE, [b"x"])
    assert set(store.uploads) == set(blobs.uploads) == {session_of(u) for u in tickets[:3]}
    capped.cancel_upload(APP, tickets[3], ALICE)  # tickets are cancelled without a slot
    assert len(store.uploads) == 3


def test_the_cap_counts_each_account_on_its_own(capped, store):
    for _ in range(3):
        open_upload(capped, APP, ALICE)
    open_upload(capped, APP, BOB)  # Alice's sessions do not count against Bob
    with pytest.raises(TooManyUploads):
        open_upload(capped, APP, ALICE)
    assert len(store.uploads) == 4


def test_finished_or_cancelled_uploads_free_their_slot(capped):
    first, second, _third = (open_upload(capped) for _ in range(3))
    capped.cancel_upload(APP, first, ALICE)
    open_upload(capped)
    capped.finish_upload(APP, second, ALICE, Digest.of(b""))
    open_upload(capped)
    with pytest.raises(TooManyUploads):
        open_upload(capped)


def test_monolithic_pushes_and_mounts_need_no_slot(capped, store):
    upload_id = capped.start_upload(APP, ALICE)  # handed out below the cap
    for _ in range(3):
        open_upload(capped)
    digest = Digest.of(b"whole")
    assert capped.push_blob(OTHER, digest, [b"whole"]) == BlobInfo(digest, 5)
    assert capped.mount_blob(APP, OTHER, digest) == BlobInfo(digest, 5)
    assert capped.mount_blob_from_any(RepositoryName.parse("team/third"), digest, lambda _repo: True) is not None
    # A POST's ticket, then a PUT with the whole body (docker's small blobs): never a row, so no slot either.
    body = Digest.of(b"the whole body")
    assert capped.finish_upload(APP, upload_id, ALICE, body, [b"the whole body"]) == BlobInfo(body, 14)
    assert store.linked_blob(APP, body) == BlobInfo(body, 14)
    assert len(store.uploads) == 3


def test_a_cap_of_zero_is_no_cap(store, blobs):
    service = RegistryService(store, blobs, FixedClock(), max_open_uploads_per_account=0)
    for _ in range(150):
        open_upload(service)
    assert len(store.uploads) == 150


def test_the_default_cap_is_a_hundred(service, store):
    tickets = [service.start_upload(APP, ALICE) for _ in range(101)]
    for upload_id in tickets[:100]:
        service.append_upload(APP, upload_id, ALICE, [b""])
    with pytest.raises(TooManyUploads):
        service.append_upload(APP, tickets[100], ALICE, [b""])
    with pytest.raises(TooManyUploads):
        service.start_upload(APP, ALICE)
    assert len(store.uploads) == 100


def test_an_account_s_uploads_are_forgotten_then_their_bytes_aborted(service, store, blobs):
    mine = [open_upload(service, APP), open_upload(service, OTHER)]
    service.append_upload(APP, mine[0], ALICE, [b"half a layer"])
    theirs = session_of(open_upload(service, APP, BOB))
    sessions = [session_of(upload_id) for upload_id in mine]
    upload_ids = service.account_upload_ids(ALICE)
    assert sorted(upload_ids) == sorted(sessions)
    service.forget_uploads(upload_ids)
    assert set(store.uploads) == {theirs} and set(blobs.uploads) == {*sessions, theirs}  # bytes wait for the commit
    service.abort_upload_bytes(upload_ids)
    service.abort_upload_bytes(upload_ids)  # idempotent
    assert set(store.uploads) == {theirs} and set(blobs.uploads) == {theirs}
    # Their tickets are still within their lifetime: only the tombstones keep them from opening again.
    for upload_id, name in zip(mine, (APP, OTHER), strict=True):
        assert store.upload_closed(session_of(upload_id))
        with pytest.raises(UploadUnknown):
            service.upload_status(name, upload_id, ALICE)
        with pytest.raises(UploadUnknown):
            service.append_upload(name, upload_id, ALICE, [b"again"])
    assert service.account_upload_ids(ALICE) == []
    assert set(store.uploads) == {theirs}


# --- abandoned uploads: reclaimed at the cap -------------------------------------------------------------
@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def reclaiming(store, blobs, clock):
    return RegistryService(store, blobs, clock, max_open_uploads_per_account=3, abandoned_upload_seconds=3600)


def test_at_the_cap_abandoned_uploads_are_reclaimed_and_the_new_one_opens(reclaiming, store, blobs, clock):
    old = [open_upload(reclaiming) for _ in range(3)]
    reclaiming.append_upload(APP, old[0], ALICE, [b"never finished"])
    clock.advance(seconds=3601)
    fresh = reclaiming.start_upload(OTHER, ALICE)  # at the cap, the POST reclaims
    assert store.uploads == {} and blobs.uploads == {}
    reclaiming.append_upload(OTHER, fresh, ALICE, [b"new"])
    assert set(store.uploads) == {session_of(fresh)} and set(blobs.uploads) == {session_of(fresh)}
    assert all(store.upload_closed(session_of(u)) for u in old)
    with pytest.raises(UploadUnknown):
        reclaiming.append_upload(APP, old[0], ALICE, [b"too late"])


def test_only_uploads_older_than_the_age_are_reclaimed_oldest_first(reclaiming, store, clock):
    oldest = session_of(open_upload(reclaiming))
    clock.advance(seconds=1800)
    younger = [session_of(open_upload(reclaiming)) for _ in range(2)]
    clock.advance(seconds=1801)  # the oldest is 3601 seconds old, the others 1801
    fresh = session_of(open_upload(reclaiming))
    assert set(store.uploads) == {*younger, fresh}
    assert oldest not in store.uploads
    with pytest.raises(TooManyUploads) as refused:
        open_upload(reclaiming)
    # The oldest left was opened at 00:30:00 and is abandoned an hour later, 1799 seconds from now (01:00:01).
    assert "after 2026-01-01 01:30:00 UTC (in 1799 seconds)" in refused.value.message
    assert refused.value.detail["reclaimable_at"] == "2026-01-01T01:30:00+00:00"


def test_a_session_s_age_counts_from_its_first_bytes_not_its_ticket(reclaiming, store, clock):
    early = [reclaiming.start_upload(APP, ALICE) for _ in range(3)]
    clock.advance(seconds=3000)
    for upload_id in early:  # opened 3000 seconds after their POST
        reclaiming.append_upload(APP, upload_id, ALICE, [b"x"])
    clock.advance(seconds=601)  # 3601 seconds after the POSTs, 601 after the first bytes
    with pytest.raises(TooManyUploads):
        open_upload(reclaiming)
    assert set(store.uploads) == {session_of(u) for u in early}
    # Opened, they no longer expire by their tickets: they go on.
    assert reclaiming.append_upload(APP, early[0], ALICE, [b"y"]) == 2


def test_an_upload_exactly_as_old_as_the_age_is_not_reclaimed_yet(reclaiming, clock):
    for _ in range(3):
        open_upload(reclaiming)
    clock.advance(seconds=3600)
    with pytest.raises(TooManyUploads) as refused:
        open_upload(reclaiming)
    assert "(in 1 seconds)" in refused.value.message
    clock.advance(seconds=1)
    open_upload(reclaiming)


def test_the_refusal_says_when_the_oldest_upload_becomes_reclaimable(reclaiming, store, blobs, clock):
    for _ in range(3):
        open_upload(reclaiming)
        clock.advance(seconds=60)
    with pytest.raises(TooManyUploads) as refused:
        open_upload(reclaiming)
    message = refused.value.message
    assert "3 uploads are open" in message and "DELETE" in message
    assert "the oldest, started 2026-01-01 00:00:00 UTC, counts as abandoned after 2026-01-01 01:00:00 UTC" in message
    assert "(in 3420 seconds)" in message
    assert refused.value.retry_after_seconds == 3420
    assert len(store.uploads) == 3 and len(blobs.uploads) == 3


def test_below_the_cap_old_uploads_are_left_alone(reclaiming, store, clock):
    old = open_upload(reclaiming)
    clock.advance(days=2)
    open_upload(reclaiming)
    assert session_of(old) in store.uploads
    assert not store.upload_closed(session_of(old))


def test_only_the_account_s_own_abandoned_uploads_are_reclaimed(reclaiming, store, clock):
    bobs = [session_of(open_upload(reclaiming, APP, BOB)) for _ in range(3)]
    alices = [session_of(open_upload(reclaiming, APP, ALICE)) for _ in range(3)]
    clock.advance(hours=2)
    open_upload(reclaiming, APP, ALICE)
    assert set(bobs) <= set(store.uploads)
    assert not set(alices) & set(store.uploads)


def test_an_age_of_zero_never_reclaims(store, blobs, clock):
    service = RegistryService(store, blobs, clock, max_open_uploads_per_account=3, abandoned_upload_seconds=0)
    for _ in range(3):
        open_upload(service)
    clock.advance(days=30)
    with pytest.raises(TooManyUploads) as refused:
        open_upload(service)
    assert refused.value.detail == {"open": 3, "limit": 3}
    assert len(store.uploads) == 3


def test_the_default_age_is_an_hour(store, blobs, clock):
    service = RegistryService(store, blobs, clock, max_open_uploads_per_account=1)
    open_upload(service)
    clock.advance(seconds=3600)
    with pytest.raises(TooManyUploads):
        open_upload(service)
    clock.advance(seconds=1)
    open_upload(service)


def test_account_uploads_lists_the_oldest_first_and_filters_by_age(reclaiming, store, clock):
    first = session_of(open_upload(reclaiming, APP))
    clock.advance(seconds=100)
    second = session_of(open_upload(reclaiming, OTHER))
    open_upload(reclaiming, APP, BOB)
    reclaiming.start_upload(APP, ALICE)  # a ticket without bytes is no open session
    clock.advance(seconds=50)
    listed = reclaiming.account_uploads(ALICE)
    assert [u.id for u in listed] == [first, second]
    assert [u.repository for u in listed] == [APP, OTHER]
    assert listed[0].created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [u.id for u in reclaiming.account_uploads(ALICE, older_than_seconds=120)] == [first]
    assert reclaiming.account_uploads(ALICE, older_than_seconds=150) == []


def test_received_bytes_is_what_the_upload_holds_or_none(service):
    upload_id = service.start_upload(APP, ALICE)
    assert service.received_bytes(session_of(upload_id)) is None  # a ticket alone holds nothing
    service.append_upload(APP, upload_id, ALICE, [b"12345"])
    assert service.received_bytes(session_of(upload_id)) == 5
    service.abort_upload_bytes([session_of(upload_id)])
    assert service.received_bytes(session_of(upload_id)) is None


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
    open_upload(service, APP)  # the repository exists, without manifests
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
    open_upload(service, APP)  # its first bytes create the repository
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


# --- two requests on one ticket (the reviewer's findings) ----------------------------------------------------------
def test_a_whole_body_put_writes_its_bytes_under_an_id_of_its_own_never_the_ticket_s(store, blobs, clock):
    """On S3 a blob stays at its upload's key: were it the ticket's session id, a second request on the same ticket
    (a retry, a PATCH) would abort or overwrite a committed blob's object."""
    service = RegistryService(store, blobs, clock)
    ticket = service.start_upload(APP, ALICE)
    started: list[str] = []
    original = blobs.start_upload
    blobs.start_upload = lambda upload_id, algorithm="sha256": (
        started.append(upload_id),
        original(upload_id, algorithm),
    )[1]
    data = b"the whole blob"
    service.finish_upload(APP, ticket, ALICE, Digest.of(data), [data])
    assert len(started) == 1 and started[0] != session_of(ticket)
    assert session_of(ticket) in store.closed_uploads


def test_a_first_patch_on_a_ticket_spent_since_it_was_read_is_refused_and_starts_no_bytes(store, blobs, clock):
    service = RegistryService(store, blobs, clock)
    ticket = service.start_upload(APP, ALICE)
    store.close_upload(session_of(ticket), clock.now())  # another node's PUT finished it after this request's read
    stale_read = RegistryService(
        store, blobs, clock, lookups=InMemoryRegistryStore(), upload_tickets=service.upload_tickets
    )
    with pytest.raises(UploadUnknown):
        stale_read.append_upload(APP, ticket, ALICE, [b"late bytes"])
    assert session_of(ticket) not in blobs.uploads


def test_a_first_patch_whose_bytes_exist_already_is_unknown_not_an_error(store, blobs, clock):
    service = RegistryService(store, blobs, clock)
    ticket = service.start_upload(APP, ALICE)
    blobs.start_upload(session_of(ticket))  # left by a crash, or being written by another request
    with pytest.raises(UploadUnknown):
        service.append_upload(APP, ticket, ALICE, [b"bytes"])
    assert session_of(ticket) not in store.uploads  # its row went again: the ticket is as fresh as before

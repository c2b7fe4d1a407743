"""The BlobStore contract: one suite every adapter of the port passes — the in-memory fake, the folder store and the
S3 store (against moto_server, a real HTTP endpoint; marked s3 and server).

A new adapter joins by adding a case to the `store` fixture. A store may choose where a blob's bytes go: `finish`
then returns the place (`BlobInfo.location`) and the caller passes it back to `open`, `stat` and `delete`, as the
database does; `push` below keeps each blob's location for `read`.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.domain.errors import BlobUnknown, DigestInvalid, RangeInvalid, UploadUnknown
from stevedore.domain.model import BlobInfo, ByteRange, Digest
from tests.fakes import InMemoryBlobStore
from tests.integration.s3.moto_server import moto_server  # noqa: F401 - a fixture

MIB = 1024 * 1024
S3 = pytest.param("s3", marks=[pytest.mark.s3, pytest.mark.server])


class Located:
    """A store that remembers where `finish` put each blob, as the database does, and passes it back."""

    def __init__(self, inner):
        self.inner = inner
        self.locations: dict[Digest, str | None] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def finish(self, upload_id, digest, final_chunks=(), *, place=True):
        info = self.inner.finish(upload_id, digest, final_chunks, place=place)
        self.locations[digest] = info.location
        return BlobInfo(info.digest, info.size)  # compared without the location, which the store chooses

    def stat(self, digest):
        info = self.inner.stat(digest, self.locations.get(digest))
        return None if info is None else BlobInfo(info.digest, info.size)

    def open(self, digest, byte_range=None):
        return self.inner.open(digest, byte_range, self.locations.get(digest))

    def delete(self, digest):
        self.inner.delete(digest, self.locations.get(digest))


@pytest.fixture(params=["memory", "folder", S3])
def store(request, tmp_path):
    if request.param == "memory":
        return Located(InMemoryBlobStore())
    if request.param == "s3":
        server = request.getfixturevalue("moto_server")
        # Parts of 1 KiB (moto's minimum is lowered): the multi-MiB test makes thousands of parts.
        return Located(server.store(server.new_bucket(), part_size=64 * 1024))
    return Located(FolderBlobStore(str(tmp_path / "blobs"), fsync=True))


def new_id() -> str:
    return str(uuid.uuid4())


def push(store, data: bytes, chunks: int = 1) -> Digest:
    """Upload `data` in `chunks` appends and commit it; the digest."""
    upload_id = new_id()
    store.start_upload(upload_id)
    step = max(1, -(-len(data) // chunks))
    for start in range(0, len(data), step):
        store.append(upload_id, [data[start : start + step]], offset=start)
    digest = Digest.of(data)
    store.finish(upload_id, digest)
    return digest


def read(store, digest: Digest, byte_range: ByteRange | None = None) -> bytes:
    return b"".join(store.open(digest, byte_range))


# --- blobs ---------------------------------------------------------------------------------------------
def test_pushed_blob_reads_back_whole_and_stats_its_size(store):
    digest = push(store, b"hello, blob", chunks=3)
    assert read(store, digest) == b"hello, blob"
    assert store.stat(digest) == BlobInfo(digest, 11)


def test_empty_blob_round_trips(store):
    digest = push(store, b"")
    assert store.stat(digest) == BlobInfo(digest, 0)
    assert read(store, digest) == b""


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0, 0, b"0"), (0, 9, b"0123456789"), (3, 6, b"3456"), (9, 9, b"9"), (5, 100, b"56789")],
)
def test_a_byte_range_reads_just_those_bytes(store, start, end, expected):
    digest = push(store, b"0123456789")
    assert read(store, digest, ByteRange(start, end)) == expected


def test_unknown_blob_has_no_stat_and_cannot_be_opened(store):
    digest = Digest.of(b"never pushed")
    assert store.stat(digest) is None
    with pytest.raises(BlobUnknown):
        store.open(digest)  # raised by the call itself, before any streaming starts
    with pytest.raises(BlobUnknown):
        store.open(digest, ByteRange(0, 1))


def test_deleted_blob_is_gone_and_delete_is_idempotent(store):
    digest = push(store, b"short-lived")
    store.delete(digest)
    store.delete(digest)
    assert store.stat(digest) is None
    with pytest.raises(BlobUnknown):
        store.open(digest)


def test_local_path_is_none_or_a_file_holding_the_blob(store):
    digest = push(store, b"on disk?")
    path = store.local_path(digest)
    if path is not None:
        with open(path, "rb") as handle:
            assert handle.read() == b"on disk?"
    assert store.local_path(Digest.of(b"absent")) is None


def test_sha512_blob_round_trips(store):
    data = b"a sha512 blob"
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [data])
    digest = Digest.of(data, "sha512")
    assert store.finish(upload_id, digest) == BlobInfo(digest, len(data))
    assert read(store, digest) == data
    assert store.stat(Digest.of(data)) is None  # stored under the digest it was verified with


def test_identical_digests_in_two_algorithms_are_distinct_blobs(store):
    sha256 = push(store, b"same bytes")
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"same bytes"])
    sha512 = Digest.of(b"same bytes", "sha512")
    store.finish(upload_id, sha512)
    store.delete(sha256)
    assert store.stat(sha512) == BlobInfo(sha512, 10)


# --- uploads -------------------------------------------------------------------------------------------
def test_upload_grows_with_each_append_and_reports_its_size(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    assert store.upload_size(upload_id) == 0
    assert store.append(upload_id, [b"abc", b"", b"de"]) == 5
    assert store.append(upload_id, [b"fgh"], offset=5) == 8
    assert store.upload_size(upload_id) == 8
    digest = Digest.of(b"abcdefgh")
    assert store.finish(upload_id, digest) == BlobInfo(digest, 8)
    assert read(store, digest) == b"abcdefgh"


def test_unfinished_upload_is_not_a_blob(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"partial"])
    assert store.stat(Digest.of(b"partial")) is None


@pytest.mark.parametrize("operation", ["size", "append", "finish"])
def test_unknown_upload_is_refused(store, operation):
    calls = {
        "size": lambda: store.upload_size("no-such-upload"),
        "append": lambda: store.append("no-such-upload", [b"x"]),
        "finish": lambda: store.finish("no-such-upload", Digest.of(b"x")),
    }
    with pytest.raises(UploadUnknown):
        calls[operation]()


@pytest.mark.parametrize("upload_id", ["", "../escape", "a/b", ".hidden"])
def test_upload_ids_that_are_not_plain_names_are_unknown(store, upload_id):
    with pytest.raises(UploadUnknown):
        store.upload_size(upload_id)
    with pytest.raises(UploadUnknown):
        store.append(upload_id, [b"x"])


def test_finished_upload_is_gone(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"done"])
    store.finish(upload_id, Digest.of(b"done"))
    with pytest.raises(UploadUnknown):
        store.upload_size(upload_id)
    with pytest.raises(UploadUnknown):
        store.append(upload_id, [b"more"])


@pytest.mark.parametrize("offset", [0, 2, 4, 100])
def test_out_of_order_append_is_refused_and_leaves_the_upload_unchanged(store, offset):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"abc"])
    with pytest.raises(RangeInvalid):
        store.append(upload_id, [b"zzz"], offset=offset)
    assert store.upload_size(upload_id) == 3
    store.append(upload_id, [b"def"], offset=3)
    store.finish(upload_id, Digest.of(b"abcdef"))
    assert read(store, Digest.of(b"abcdef")) == b"abcdef"


def test_wrong_digest_is_refused_leaves_nothing_visible_and_the_upload_finishable(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"real content"])
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestInvalid):
        store.finish(upload_id, wrong)
    assert store.stat(wrong) is None
    assert store.stat(Digest.of(b"real content")) is None
    assert store.upload_size(upload_id) == 12
    right = Digest.of(b"real content")
    assert store.finish(upload_id, right) == BlobInfo(right, 12)
    assert read(store, right) == b"real content"


def test_wrong_sha512_digest_is_refused(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"content"])
    with pytest.raises(DigestInvalid):
        store.finish(upload_id, Digest.of(b"other", "sha512"))
    store.finish(upload_id, Digest.of(b"content", "sha512"))


def test_more_bytes_after_a_failed_finish_are_verified_too(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"first"])
    with pytest.raises(DigestInvalid):
        store.finish(upload_id, Digest.of(b"first and second"))
    store.append(upload_id, [b" and second"], offset=5)
    with pytest.raises(DigestInvalid):
        store.finish(upload_id, Digest.of(b"first"))
    store.finish(upload_id, Digest.of(b"first and second"))
    assert read(store, Digest.of(b"first and second")) == b"first and second"


def test_abort_forgets_the_upload_and_is_idempotent(store):
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"abandoned"])
    store.abort(upload_id)
    store.abort(upload_id)
    store.abort("never-started")
    with pytest.raises(UploadUnknown):
        store.upload_size(upload_id)
    with pytest.raises(UploadUnknown):
        store.finish(upload_id, Digest.of(b"abandoned"))
    assert store.stat(Digest.of(b"abandoned")) is None


def test_finishing_a_blob_that_already_exists_is_harmless(store):
    digest = push(store, b"twice")
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, [b"twi", b"ce"])
    assert store.finish(upload_id, digest) == BlobInfo(digest, 5)
    assert read(store, digest) == b"twice"
    with pytest.raises(UploadUnknown):
        store.upload_size(upload_id)


def test_uploads_are_independent(store):
    first, second = new_id(), new_id()
    store.start_upload(first)
    store.start_upload(second)
    store.append(first, [b"one"])
    store.append(second, [b"two!"])
    store.abort(first)
    assert store.upload_size(second) == 4
    store.finish(second, Digest.of(b"two!"))


def test_a_chunk_iterator_that_fails_half_way_keeps_what_came_before(store):
    def chunks():
        yield b"kept"
        raise OSError("client went away")

    upload_id = new_id()
    store.start_upload(upload_id)
    with pytest.raises(OSError, match="client went away"):
        store.append(upload_id, chunks())
    assert store.upload_size(upload_id) == 4
    store.append(upload_id, [b"+more"], offset=4)
    store.finish(upload_id, Digest.of(b"kept+more"))


def test_multi_mib_blob_streams_in_chunks_of_at_most_one_mib(store):
    data = hashlib.sha256(b"seed").digest() * (5 * MIB // 32 + 7)  # a little over 5 MiB
    upload_id = new_id()
    store.start_upload(upload_id)
    store.append(upload_id, (data[i : i + 300_000] for i in range(0, len(data), 300_000)))
    digest = Digest.of(data)
    store.finish(upload_id, digest)
    chunks = list(store.open(digest))
    assert len(chunks) >= 5
    assert all(0 < len(c) <= MIB for c in chunks)
    assert b"".join(chunks) == data
    ranged = list(store.open(digest, ByteRange(MIB // 2, 3 * MIB)))
    assert all(len(c) <= MIB for c in ranged) and len(ranged) >= 3
    assert b"".join(ranged) == data[MIB // 2 : 3 * MIB + 1]


# --- the folder store across processes -----------------------------------------------------------------
# The port says append and finish may run in another process than start_upload. A second FolderBlobStore over the
# same folder stands for that process: it shares the files and none of the first one's in-memory state.
@pytest.fixture
def folder_pair(tmp_path):
    root = str(tmp_path / "shared")
    return FolderBlobStore(root, fsync=True), FolderBlobStore(root, fsync=True)


def test_upload_appended_by_one_process_is_verified_by_another(folder_pair):
    first, second = folder_pair
    upload_id = new_id()
    first.start_upload(upload_id)
    first.append(upload_id, [b"written by ", b"the first"])
    with pytest.raises(DigestInvalid):
        second.finish(upload_id, Digest.of(b"something else"))
    digest = Digest.of(b"written by the first")
    assert second.finish(upload_id, digest) == BlobInfo(digest, 20)
    assert read(first, digest) == b"written by the first"


def test_chunks_appended_alternately_by_two_processes_verify_in_either(folder_pair):
    first, second = folder_pair
    data = b"".join(bytes([i]) * 1000 for i in range(6))
    upload_id = new_id()
    first.start_upload(upload_id)
    for i in range(6):
        (first if i % 2 == 0 else second).append(upload_id, [data[i * 1000 : (i + 1) * 1000]], offset=i * 1000)
    with pytest.raises(DigestInvalid):
        first.finish(upload_id, Digest.of(data[:1000]))  # what the first process alone hashed
    with pytest.raises(DigestInvalid):
        second.finish(upload_id, Digest.of(data[:-1]))
    first.finish(upload_id, Digest.of(data))
    assert read(second, Digest.of(data)) == data


def test_upload_appended_by_another_process_after_the_first_cannot_pass_off_the_first_part(folder_pair):
    first, second = folder_pair
    upload_id = new_id()
    first.start_upload(upload_id)
    first.append(upload_id, [b"head"])
    second.append(upload_id, [b"tail"], offset=4)
    with pytest.raises(DigestInvalid):
        first.finish(upload_id, Digest.of(b"head"))
    first.finish(upload_id, Digest.of(b"headtail"))


def test_an_upload_id_restarted_by_another_process_is_verified_against_its_new_bytes(folder_pair):
    # Upload ids are the caller's: after an abort the same id may be started again, here by another process.
    # Same size as before, different bytes: a cache keyed by (id, size) in the first process must not be trusted.
    first, second = folder_pair
    upload_id = "reused-id"
    first.start_upload(upload_id)
    first.append(upload_id, [b"old!"])
    second.abort(upload_id)
    second.start_upload(upload_id)
    second.append(upload_id, [b"new!"])
    with pytest.raises(DigestInvalid):
        first.finish(upload_id, Digest.of(b"old!"))  # would commit b"new!" under the digest of b"old!"
    assert first.stat(Digest.of(b"old!")) is None
    first.finish(upload_id, Digest.of(b"new!"))
    assert read(second, Digest.of(b"new!")) == b"new!"


def test_blob_committed_by_one_process_is_readable_by_another(folder_pair):
    first, second = folder_pair
    digest = push(first, b"shared bytes", chunks=2)
    assert second.stat(digest) == BlobInfo(digest, 12)
    assert read(second, digest) == b"shared bytes"


def test_a_wrong_final_chunk_leaves_the_upload_as_it_was(store):
    upload = new_id()
    store.start_upload(upload)
    store.append(upload, [b"abc"])
    with pytest.raises(DigestInvalid):
        store.finish(upload, Digest.of(b"abcdef"), [b"xyz"])
    assert store.upload_size(upload) == 3
    assert store.finish(upload, Digest.of(b"abcdef"), [b"def"]).size == 6
    assert read(store, Digest.of(b"abcdef")) == b"abcdef"


def test_an_append_racing_a_finish_never_reaches_the_committed_blob(tmp_path):
    """A PATCH that reaches the upload while its PUT is being verified must not add bytes to the verified blob."""
    import threading

    store = FolderBlobStore(str(tmp_path / "race"), fsync=False)
    upload = new_id()
    store.start_upload(upload)
    store.append(upload, [b"the real layer"])
    outcome: list[object] = []

    def late_append():
        try:
            outcome.append(store.append(upload, [b"ATTACKER BYTES"]))
        except UploadUnknown as exc:
            outcome.append(exc)

    racer = threading.Thread(target=late_append)

    def final_chunks():
        racer.start()  # while finish holds the upload: the append opens the file and waits for the lock
        racer.join(timeout=0.5)
        yield b""

    info = store.finish(upload, Digest.of(b"the real layer"), final_chunks())
    racer.join(timeout=10)
    assert isinstance(outcome[0], UploadUnknown)
    assert read(store, info.digest) == b"the real layer"
    assert store.stat(info.digest).size == len(b"the real layer")

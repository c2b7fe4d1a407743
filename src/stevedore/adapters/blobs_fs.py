"""Adapter: the BlobStore port on a local folder — the embedded default.

Layout under the root: `blobs/<algorithm>/<2 hex>/<hex>` for committed blobs, `uploads/<id>/data` for uploads in
progress. A blob becomes visible only by an atomic rename after its digest is verified and its bytes fsynced.

A full disk (ENOSPC, or EDQUOT over a quota) is the domain's StorageFull, and a write that meets it leaves nothing
of itself: an append or finish truncates the upload back to where the request found it (so the client may retry once
space is freed), a start removes the upload's folder. Upload files are written unbuffered, so no bytes wait in a
buffer to be written (or fail) after the truncation.

With fsync on, the disk writes an upload while it arrives: every `writeback_window` bytes appended, the kernel is told
to start writing that range out (sync_file_range, adapters/writeback.py; asynchronous, no durability of its own), and
at the end of each append the rest of it. The fsync before the rename, which alone makes the blob durable, then
waits only for what is still in flight instead of writing the whole blob (in-process, 256 MiB: 0.13 s -> 0.006 s,
`benchmarks.blob_finish`). Each byte is still written once, from the caller's chunk, with no copy. Only the
asynchronous start is used, never a wait on a range: see writeback.py for why (writeback errors stay the fsync's).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from stevedore.adapters.writeback import start_writeback
from stevedore.domain.errors import BlobUnknown, DigestInvalid, RangeInvalid, StorageFull, UploadUnknown
from stevedore.domain.model import BlobInfo, ByteRange, Digest

CHUNK_SIZE = 1024 * 1024
# How much of an upload is written before its writeback is started (see benchmarks/README.md for the measurements).
WRITEBACK_WINDOW = 8 * 1024 * 1024


class _RunningHash:
    """The hash of an upload's bytes, kept by the process that received them (a cache only).

    It is trusted only while the data file is exactly as this process left it (same inode, size and mtime), so an
    append by another process, or an upload restarted under the same id, sends `finish` back to the file.
    """

    def __init__(self, algorithm: str) -> None:
        # One algorithm, the one the upload declared: hashing costs more CPU than anything else in a push.
        self.algorithm = algorithm
        self.hasher = hashlib.new(algorithm)
        self.file_state: tuple[int, int, int, int] | None = None

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)


def _file_state(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


MAX_CACHED_HASHES = 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


@contextmanager
def _disk_full_is_storage_full() -> Iterator[None]:
    """ENOSPC and EDQUOT from the filesystem become StorageFull; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if _is_disk_full(exc):
            raise StorageFull(detail={"reason": exc.strerror}) from exc
        raise


class FolderBlobStore:
    def __init__(self, root: str, *, fsync: bool = True, writeback_window: int = WRITEBACK_WINDOW) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        # Starting the writeback early only serves the fsync at the end: none without it. 0 turns it off.
        self.writeback_window = writeback_window if fsync else 0
        self._hashes: OrderedDict[str, _RunningHash] = OrderedDict()
        self._lock = threading.Lock()
        # Uploads whose verified copy `finish` fsynced already: `restore` places it without a second fsync.
        self._synced: set[str] = set()
        os.makedirs(self.root, mode=0o700, exist_ok=True)  # when we create it: only the server reads blobs
        os.makedirs(os.path.join(self.root, "blobs"), exist_ok=True)
        os.makedirs(os.path.join(self.root, "uploads"), exist_ok=True)

    # --- paths ---------------------------------------------------------------------------------------
    def _blob_path(self, digest: Digest) -> str:
        return os.path.join(self.root, "blobs", digest.algorithm, digest.hex[:2], digest.hex)

    def _upload_dir(self, upload_id: str) -> str:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise UploadUnknown()
        return os.path.join(self.root, "uploads", upload_id)

    def _upload_data(self, upload_id: str) -> str:
        return os.path.join(self._upload_dir(upload_id), "data")

    def _upload_verified(self, upload_id: str) -> str:
        """Where a finished upload's bytes stay (a second link to the blob's file) until `release`."""
        return os.path.join(self._upload_dir(upload_id), "verified")

    # --- blobs ---------------------------------------------------------------------------------------
    def stat(self, digest: Digest, location: str | None = None) -> BlobInfo | None:
        try:
            return BlobInfo(digest, os.stat(self._blob_path(digest)).st_size)
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> str | None:
        path = self._blob_path(digest)
        return path if os.path.exists(path) else None

    def download_url(self, digest: Digest, location: str | None = None) -> str | None:
        return None  # the app streams the file (sendfile through wsgi.file_wrapper)

    def min_chunk_length(self) -> int | None:
        return None  # a chunk of any size is appended to a file

    def open(self, digest: Digest, byte_range: ByteRange | None = None, location: str | None = None) -> Iterator[bytes]:
        try:
            handle = open(self._blob_path(digest), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise BlobUnknown(detail={"digest": str(digest)}) from exc
        return self._read(handle, byte_range)

    @staticmethod
    def _read(handle: object, byte_range: ByteRange | None) -> Iterator[bytes]:
        with handle:  # type: ignore[attr-defined]
            remaining = None
            if byte_range is not None:
                handle.seek(byte_range.start)  # type: ignore[attr-defined]
                remaining = byte_range.length
            while remaining is None or remaining > 0:
                size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = handle.read(size)  # type: ignore[attr-defined]
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, digest: Digest, location: str | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._blob_path(digest))

    # A re-push of a digest writes (or reuses) the file at the digest's path: garbage collection deletes it while
    # the blob rows are locked (domain/gc.py).
    deletes_in_place = True

    def delete_blobs(self, blobs: Sequence[BlobInfo]) -> list[BlobInfo]:
        """Unlink the blobs' files (garbage collection); those that could not be unlinked. Gone already: deleted."""
        failed = []
        for blob in blobs:
            try:
                os.unlink(self._blob_path(blob.digest))
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(blob)
        return failed

    # --- uploads -------------------------------------------------------------------------------------
    def start_upload(self, upload_id: str, digest_algorithm: str = "sha256") -> None:
        folder = self._upload_dir(upload_id)
        with _disk_full_is_storage_full():
            os.makedirs(folder, exist_ok=False)
            try:
                with open(self._upload_data(upload_id), "xb") as handle:
                    running = _RunningHash(digest_algorithm)
                    running.file_state = _file_state(os.fstat(handle.fileno()))
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)  # the folder is ours: exist_ok=False
                raise
        self._remember(upload_id, running)

    def _remember(self, upload_id: str, running: _RunningHash) -> None:
        with self._lock:
            self._hashes[upload_id] = running
            self._hashes.move_to_end(upload_id)
            while len(self._hashes) > MAX_CACHED_HASHES:  # abandoned uploads must not grow the cache forever
                self._hashes.popitem(last=False)

    def upload_size(self, upload_id: str) -> int:
        try:
            return os.stat(self._upload_data(upload_id)).st_size
        except FileNotFoundError as exc:
            raise UploadUnknown(detail={"upload": upload_id}) from exc

    @contextmanager
    def _locked_upload(self, upload_id: str) -> Iterator[BinaryIO]:
        """The upload's data file, opened and exclusively locked (flock: across threads, processes and, on a
        shared filesystem with working locks, hosts). Once finish or abort has removed the file, whoever waited
        for the lock finds the upload gone instead of writing into a committed blob."""
        path = self._upload_data(upload_id)
        try:
            # Unbuffered: every write reaches the file (or fails) before a failed request truncates it.
            handle = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed below, which also releases the lock
        except FileNotFoundError as exc:
            raise UploadUnknown(detail={"upload": upload_id}) from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            opened = os.fstat(handle.fileno())
            try:
                current = os.stat(path)
            except FileNotFoundError as exc:
                raise UploadUnknown(detail={"upload": upload_id}) from exc
            if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                raise UploadUnknown(detail={"upload": upload_id})
            yield handle

    def _write(
        self, upload_id: str, handle: BinaryIO, chunks: Iterable[bytes], *, start_tail: bool
    ) -> _RunningHash | None:
        """Append chunks at the end, keeping the running hash when it is still the file's.

        Every `writeback_window` bytes the kernel starts writing them out; with `start_tail`, also the last bytes
        (an append: the finish that fsyncs may be a later request)."""
        position = handle.seek(0, os.SEEK_END)
        fd = handle.fileno()
        window = self.writeback_window
        started = position  # the writeback of this request's bytes before here has been started
        with self._lock:
            running = self._hashes.pop(upload_id, None)
        if running is not None and running.file_state != _file_state(os.fstat(handle.fileno())):
            running = None  # another process wrote here: the file will be re-read
        for chunk in chunks:
            if not chunk:
                continue
            view = memoryview(chunk)
            while view:  # an unbuffered write may take only part of the chunk
                written = handle.write(view)
                view = view[written:]
            if running is not None:
                running.update(chunk)
            position += len(chunk)
            if window and position - started >= window:
                if start_writeback(fd, started, position - started):
                    started = position
                else:
                    window = 0  # not on this filesystem: the fsync writes it all, as without
        if window and start_tail and position > started:
            start_writeback(fd, started, position - started)
        if running is not None:
            running.file_state = _file_state(os.fstat(handle.fileno()))
        return running

    def append(self, upload_id: str, chunks: Iterable[bytes], offset: int | None = None) -> int:
        with _disk_full_is_storage_full(), self._locked_upload(upload_id) as handle:
            size = handle.seek(0, os.SEEK_END)
            if offset is not None and offset != size:
                raise RangeInvalid(f"upload is at offset {size}, chunk starts at {offset}", detail={"size": size})
            try:
                running = self._write(upload_id, handle, chunks, start_tail=True)
            except OSError as exc:
                if _is_disk_full(exc):
                    handle.truncate(size)  # nothing of this request stays; a body cut short keeps what came
                raise
            new_size = handle.tell()
            if running is not None:
                self._remember(upload_id, running)
            return new_size

    def _hex_digest(self, handle: BinaryIO, running: _RunningHash | None, algorithm: str) -> str:
        if (
            running is not None
            and running.algorithm == algorithm
            and running.file_state == _file_state(os.fstat(handle.fileno()))
        ):
            return running.hasher.hexdigest()
        hasher = hashlib.new(algorithm)
        handle.seek(0)
        while chunk := handle.read(CHUNK_SIZE):
            hasher.update(chunk)
        return hasher.hexdigest()

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        """Verify, then place the bytes at the digest's path by a hard link (or find them there), keeping the
        verified file in the upload's folder until `release`: garbage collection may unlink the digest's file before
        the caller holds the blob's row, and `restore` then puts it back (domain/gc.py). `place=False`: only
        verified and kept; `restore` places it."""
        data = self._upload_data(upload_id)
        kept = self._upload_verified(upload_id)
        with _disk_full_is_storage_full(), self._locked_upload(upload_id) as handle:
            size_before = handle.seek(0, os.SEEK_END)
            renamed = placed = False
            try:
                running = self._write(upload_id, handle, final_chunks, start_tail=False)
                size = handle.tell()
                if self._hex_digest(handle, running, digest.algorithm) != digest.hex:
                    raise DigestInvalid(detail={"digest": str(digest)})
                target = self._blob_path(digest)
                present = os.path.exists(target)  # content-addressed: the bytes may be there already
                if self.fsync and not present:
                    os.fsync(handle.fileno())
                    with self._lock:
                        self._synced.add(upload_id)
                os.replace(data, kept)  # still locked: a waiting append will find the upload gone
                renamed = True
                if present or not place:
                    placed = True
                else:
                    self._make_dirs(os.path.dirname(target))
                    with contextlib.suppress(FileExistsError):  # another finish of the digest placed it meanwhile
                        os.link(kept, target)
                    placed = True
                    if self.fsync:
                        self._fsync_dir(os.path.dirname(target))
            except BaseException:
                # A failed finish (a wrong digest, a full disk, a body cut short) leaves the upload as it was; but
                # once linked the file is the blob's. The running hash was taken by `_write`: a later finish reads
                # the file again.
                if renamed and not placed:
                    os.replace(kept, data)
                elif not renamed:
                    handle.truncate(size_before)
                raise
        return BlobInfo(digest, size)

    def restore(self, upload_id: str, digest: Digest) -> bool:
        """After `finish`, with the blob's row held: the digest's file put back from the upload's verified copy if
        garbage collection unlinked it meanwhile. False: neither is there."""
        target = self._blob_path(digest)
        if os.path.exists(target):
            return True
        kept = self._upload_verified(upload_id)
        with self._lock:
            synced = upload_id in self._synced
        try:
            if self.fsync and not synced:
                with open(kept, "rb") as handle:
                    os.fsync(handle.fileno())
            with _disk_full_is_storage_full():
                self._make_dirs(os.path.dirname(target))
                with contextlib.suppress(FileExistsError):
                    os.link(kept, target)
        except FileNotFoundError:
            return os.path.exists(target)
        if self.fsync:
            self._fsync_dir(os.path.dirname(target))
        return True

    def release(self, upload_id: str) -> None:
        """Forget what `finish` kept of the upload (its verified copy)."""
        with self._lock:
            self._synced.discard(upload_id)
        self.abort(upload_id)

    def _make_dirs(self, path: str) -> None:
        """Create the blob's folders, fsyncing each new one's parent so the folders themselves survive a crash."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for folder in reversed(missing):
            os.makedirs(folder, exist_ok=True)
            if self.fsync:
                self._fsync_dir(os.path.dirname(folder))

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self, upload_id: str) -> None:
        with self._lock:
            self._hashes.pop(upload_id, None)
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)

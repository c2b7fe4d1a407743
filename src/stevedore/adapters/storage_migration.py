"""Adapter: copy an installation's blobs from one blob store to another (`stevedore storage migrate`).

- What is copied: every blob the database has a row for (unreferenced bytes stay behind; `stevedore fsck` lists
  them). Manifests live in the database and need no copy.
- Where to: the target's default layout, `blobs/<algorithm>/<2 hex>/<hex>`, whatever the source's place was (S3's
  `objects/<upload id>` keys included), so the rows' recorded `storage_key` must be cleared when the installation
  switches to the target: `clear_storage_keys` (the command's `--update-database`), in one transaction.
- Streamed and verified: the bytes pass through in chunks, hashed on the way; to a folder through the store's own
  upload (fsync and an atomic rename once the digest matches), to S3 as one PUT (smaller than a part) or a multipart
  upload completed only once the digest and size match (aborted otherwise), so nothing unverified becomes visible.
- Resumable: a blob already at its place in the target with the row's size is skipped (one stat per blob), so an
  interrupted migration is simply run again. An interrupted copy to a folder may leave an `uploads/migrate-…`
  folder (fsck reports it as a stale upload; `rm -r` it); to S3 an incomplete multipart upload (the bucket's
  AbortIncompleteMultipartUpload rule removes it).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.blobs_s3 import S3BlobStore, _storage_errors
from stevedore.domain.errors import DigestInvalid
from stevedore.domain.fsck import BlobRow, default_location
from stevedore.domain.model import Digest


class CopyRefused(Exception):
    """The bytes read from the source are not the blob's (another digest or size): nothing was written."""


@dataclass
class MigrationResult:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already at the target with the right size
    failed: list[tuple[str, str]] = field(default_factory=list)  # (digest, why)
    bytes_copied: int = 0

    @property
    def present(self) -> list[str]:
        """The blobs the target now holds at their digest's place."""
        return self.copied + self.skipped


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per tenth otherwise."""

    def __init__(self, total_blobs: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.total_blobs, self.total_bytes = total_blobs, total_bytes
        self.blobs = self.bytes = 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._last_tenth = -1

    def advance(self, size: int) -> None:
        self.blobs += 1
        self.bytes += size
        fraction = self.bytes / self.total_bytes if self.total_bytes else self.blobs / max(self.total_blobs, 1)
        width = 30
        done = int(fraction * width)
        line = (
            f"[{'#' * done}{' ' * (width - done)}] {self.blobs}/{self.total_blobs} blobs, "
            f"{self.bytes / 2**20:.1f}/{self.total_bytes / 2**20:.1f} MiB, {time.monotonic() - self.started:.0f} s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.blobs == self.total_blobs else ""))
        elif int(fraction * 10) > self._last_tenth or self.blobs == self.total_blobs:
            self._last_tenth = int(fraction * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


def _verified(chunks: Iterable[bytes], row: BlobRow, hasher: Any, sizes: list[int]) -> Iterator[bytes]:
    """The chunks, hashed and counted on the way through."""
    for chunk in chunks:
        hasher.update(chunk)
        sizes[0] += len(chunk)
        if sizes[0] > row.size:
            raise CopyRefused(f"the source holds more than the recorded {row.size} bytes")
        yield chunk


def _check(row: BlobRow, hasher: Any, size: int) -> None:
    digest = Digest.parse(row.digest)
    if size != row.size:
        raise CopyRefused(f"the source holds {size} bytes, {row.size} recorded")
    if hasher.hexdigest() != digest.hex:
        raise CopyRefused(f"the source's bytes hash to {digest.algorithm}:{hasher.hexdigest()}")


def _copy_to_folder(target: FolderBlobStore, row: BlobRow, chunks: Iterable[bytes]) -> None:
    digest = Digest.parse(row.digest)
    upload_id = f"migrate-{uuid.uuid4().hex}"
    target.start_upload(upload_id, digest.algorithm)
    try:
        hasher, sizes = hashlib.new(digest.algorithm), [0]
        target.append(upload_id, _verified(chunks, row, hasher, sizes))
        _check(row, hasher, sizes[0])
        target.finish(upload_id, digest)  # hashes again from its running hash: the link only once it matches
    except DigestInvalid as exc:
        target.abort(upload_id)
        raise CopyRefused("the copied bytes have another digest") from exc
    except BaseException:
        target.abort(upload_id)
        raise
    target.release(upload_id)  # what finish kept for a collection racing a push (nothing collects a new store)


def _copy_to_s3(target: S3BlobStore, row: BlobRow, chunks: Iterable[bytes]) -> None:
    digest = Digest.parse(row.digest)
    key = target.prefix + default_location(row.digest)
    client, bucket, part_size = target.client, target.bucket, target.part_size
    hasher, sizes = hashlib.new(digest.algorithm), [0]
    buffer = bytearray()
    s3_upload: str | None = None
    parts: list[dict[str, Any]] = []
    try:
        for chunk in _verified(chunks, row, hasher, sizes):
            buffer += chunk
            while len(buffer) >= part_size:
                with _storage_errors("copying a blob"):
                    if s3_upload is None:
                        s3_upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                    number = len(parts) + 1
                    done = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=s3_upload, PartNumber=number, Body=bytes(buffer[:part_size])
                    )
                parts.append({"PartNumber": number, "ETag": done["ETag"]})
                del buffer[:part_size]
        _check(row, hasher, sizes[0])
        with _storage_errors("copying a blob"):
            if s3_upload is None:
                client.put_object(Bucket=bucket, Key=key, Body=bytes(buffer))
                return
            if buffer:
                number = len(parts) + 1
                done = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=s3_upload, PartNumber=number, Body=bytes(buffer)
                )
                parts.append({"PartNumber": number, "ETag": done["ETag"]})
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=s3_upload, MultipartUpload={"Parts": parts}
            )
            s3_upload = None
    finally:
        if s3_upload is not None:  # refused or failed: the parts never become an object
            with contextlib.suppress(Exception):  # the bucket's lifecycle rule is the backstop
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=s3_upload)


def copy_blob(source: Any, target: Any, row: BlobRow) -> None:
    """Copy one blob's bytes from `source` (at its recorded place) to `target` (at its digest's place), verified."""
    chunks = source.open(Digest.parse(row.digest), location=row.storage_key)
    if isinstance(target, FolderBlobStore):
        _copy_to_folder(target, row, chunks)
    elif isinstance(target, S3BlobStore):
        _copy_to_s3(target, row, chunks)
    else:
        raise TypeError(f"cannot migrate to {type(target).__name__}")


def present_at_target(target: Any, row: BlobRow) -> bool:
    found = target.stat(Digest.parse(row.digest))  # no location: the digest's place
    return found is not None and found.size == row.size


def migrate(
    source: Any,
    target: Any,
    rows: list[BlobRow],
    *,
    progress: Progress | None = None,
    on_blob: Callable[[BlobRow], None] | None = None,
) -> MigrationResult:
    """Copy every row's blob that the target lacks. A blob that fails is recorded and the others go on."""
    result = MigrationResult()
    for row in rows:
        if on_blob is not None:
            on_blob(row)
        try:
            if present_at_target(target, row):
                result.skipped.append(row.digest)
            else:
                copy_blob(source, target, row)
                result.copied.append(row.digest)
                result.bytes_copied += row.size
        except CopyRefused as exc:
            result.failed.append((row.digest, str(exc)))
        except Exception as exc:  # reported per blob: the source lacks it, storage down, ...
            result.failed.append((row.digest, getattr(exc, "message", None) or type(exc).__name__))
        if progress is not None:
            progress.advance(row.size)
    return result

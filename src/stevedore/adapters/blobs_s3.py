"""Adapter: the BlobStore port on an S3 bucket (AWS, or an S3-compatible store: MinIO, Ceph, moto) through boto3.

Keys, under the configured prefix:

- `uploads/<upload id>`: an upload's state, one small object that is the commit point of every append. Its body is
  the tail — the bytes received after the last whole part, fewer than `part_size` — and its metadata holds the S3
  multipart upload's id (empty until there is one), the number of the next part and the bytes in the parts before
  it, and a fresh random `generation` per write. An append uploads whole parts numbered from `next-part` on, then
  writes the state; a crash in between leaves parts the state does not count, ignored and overwritten by the next
  append. So all of an upload's state is in the bucket and any process (or node) may take the next PATCH.
- `objects/<upload id>`: the upload's data. S3 fixes an object's key when its multipart upload starts, before the
  digest is known; rather than copy the whole blob to a digest-named key at commit (what Distribution does), the
  completed object stays where it is and `finish` returns its key as the blob's `location`, which the database
  records (blobs.storage_key) and hands back to `open`. The multipart upload starts lazily, in the append (or
  `finish`) that first holds a whole part: most blobs (configs, small layers) never fill one, never start a
  multipart upload, and `finish` writes their bytes, all in the tail, with one PutObject at the same key. The key is
  the same either way, so the rule for blobs.storage_key does not change.
- `blobs/<algorithm>/<2 hex>/<hex>`: a blob with no recorded location (`location=None`), the folder store's layout,
  for blobs copied in from a folder store.

The digest: the process that receives an append keeps the running hashlib state in memory, keyed by upload id,
with the upload's size, the state's generation and the ETags of the parts it hashed. `finish` trusts it only when
the state's generation is still the one it wrote; it then completes the multipart upload with exactly those ETags,
which S3 checks, so a part overwritten by another process fails the completion instead of passing unverified. When
the upload moved (another process wrote since, or this one restarted) `finish` completes the object and reads it
back once to hash it. Should that digest not match, the upload is rebuilt as it was: a new multipart upload on the
same key whose parts are server-side copies (UploadPartCopy) of the completed object's ranges, the state pointing at
it, the tail unchanged (an upload that had no whole part before the `finish` had no multipart upload: it stays
without one); then the completed object is deleted. Nothing reads it meanwhile: the database has no row pointing at
it.

Pulls: with a `presign_client`, `download_url` gives a presigned GET URL (SigV4, valid `presign_seconds`) that the
app answers a blob GET with, as a 307: the bytes then go from the bucket to the client, Range requests included,
never through the app. That client may be configured for another endpoint than the one the app talks to (clients
often cannot reach an in-cluster endpoint); presigning is computed locally and sends no request. Without it the app
streams through `open`. The part size is advertised as OCI-Chunk-Min-Length: smaller PATCHes work (the tail state
object buffers them), but each rewrites the tail, so clients that honour it send whole parts.

Errors: a connection failure, a timeout or a 5xx after boto3's retries (mode "standard") is StorageUnavailable, and
the call leaves the upload as it was before it (a multipart upload the call started and could not record in the
state is aborted, or failing that left to `stevedore upload sweep` and the bucket's lifecycle rule).

S3 requests of a blob smaller than a part, pushed as POST, PATCH, PUT: the state's PUT at the POST; its GET and PUT at
the PATCH; at the closing PUT its GET, the blob's PutObject and the state's DELETE: 6. The state written at the POST
stays, though nothing is in it yet: its absence is what tells every node an upload is finished, cancelled or swept
(a PATCH that passed the database's check just before then finds it gone, see RegistryService.abort_upload_bytes),
and "not written yet" could not be told from "gone" without writing something elsewhere instead (a tombstone at the
end costs the same request and leaves an object per blob behind).

Races the lazy start adds nothing new to: a PATCH that read the state before a concurrent finish or cancel deleted it
writes the state again (as a tail-only PATCH always could), and if it held a whole part it also starts a multipart
upload on `objects/<id>`, which nobody completes (no row is left to finish it) and does not touch a completed object
there; `stevedore upload sweep` aborts it (no session knows it) and fsck reports the state as a stale upload. Two
PATCHes at once from one state start a multipart upload each: the state written last names its own, the other is
swept the same way once the session is gone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stevedore.domain.errors import (
    BlobUnknown,
    DigestInvalid,
    PayloadTooLarge,
    RangeInvalid,
    StorageUnavailable,
    UploadUnknown,
)
from stevedore.domain.model import BlobInfo, ByteRange, Digest

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_S3_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum part number
READ_CHUNK_SIZE = MiB
MAX_CACHED_HASHES = 1024
DEFAULT_PRESIGN_SECONDS = 300
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit for a presigned URL
DELETE_BATCH = 1000  # S3's most keys in one DeleteObjects request
DEFAULT_DELETE_THREADS = 8
_MISSING = {"NoSuchKey", "404", "NotFound"}


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    addressing: str = "auto",
    max_attempts: int = 5,
    connect_timeout: float = 5,
    read_timeout: float = 60,
    session: boto3.session.Session | None = None,
    signature_version: str | None = None,
) -> Any:
    """A boto3 S3 client. Credentials come from boto3's default chain only (environment, shared profile, instance
    or container role), never from the ini; tests hand in a `session` holding theirs. Throttling and 5xx are retried
    with backoff ("standard" mode)."""
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": max_attempts},
        s3={"addressing_style": addressing},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        signature_version=signature_version,
    )
    return (session or boto3.session.Session()).client("s3", endpoint_url=endpoint_url, config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Errors S3 gives for being unreachable or failing (after retries) become StorageUnavailable; errors the caller
    handles (a missing key, a missing upload) pass unchanged as ClientError."""
    try:
        yield
    except BotoCoreError as exc:  # connection refused or reset, timeouts, no credentials
        log.warning("S3 unavailable during %s: %s", what, type(exc).__name__)
        raise StorageUnavailable(detail={"storage": "s3"}) from exc
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or _code(exc) in ("SlowDown", "RequestTimeout", "AccessDenied", "InvalidAccessKeyId"):
            log.warning("S3 unavailable during %s: %s (%s)", what, _code(exc), status)
            raise StorageUnavailable(detail={"storage": "s3"}) from exc
        raise


@dataclass
class _State:
    """An upload's state object, as read. `s3_upload` is "" until a whole part starts the multipart upload."""

    s3_upload: str
    next_part: int
    parts_size: int
    algorithm: str
    generation: str
    tail: bytes

    @property
    def size(self) -> int:
        return self.parts_size + len(self.tail)


@dataclass
class _RunningHash:
    """What this process hashed of an upload: valid while the state's generation is the one it wrote."""

    algorithm: str
    hasher: Any
    generation: str
    size: int
    etags: list[str] = field(default_factory=list)  # of parts 1..n, in order


class S3BlobStore:
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = DEFAULT_PART_SIZE,
        presign_client: Any | None = None,
        presign_seconds: int = DEFAULT_PRESIGN_SECONDS,
        delete_threads: int = DEFAULT_DELETE_THREADS,
    ) -> None:
        """`presign_client`: a client configured for the endpoint clients reach (it may be `client` itself), whose
        presigned URLs pulls are redirected to; None: pulls stream through the app."""
        if part_size <= 0:
            raise ValueError("part_size must be positive")
        if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign_seconds must be 1 to {MAX_PRESIGN_SECONDS}")
        self.client = client
        self.presign_client = presign_client
        self.presign_seconds = presign_seconds
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.delete_threads = max(1, delete_threads)  # DeleteObjects requests at once (garbage collection)
        self._hashes: OrderedDict[str, _RunningHash] = OrderedDict()
        self._lock = threading.Lock()

    def forget_connections(self) -> None:
        """Drop the clients' pooled HTTP connections (in a forked worker: its parent's, shared with its siblings).
        Closing a socket a forked process inherited ends nothing for the others; the clients open new ones."""
        for client in {id(c): c for c in (self.client, self.presign_client) if c is not None}.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()

    # --- keys (locations are relative to the prefix, so a bucket or prefix may be renamed) ----------------------
    def _key(self, relative: str) -> str:
        return self.prefix + relative

    @staticmethod
    def _digest_location(digest: Digest) -> str:
        return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"

    @staticmethod
    def _check_id(upload_id: str) -> None:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise UploadUnknown()

    def _state_key(self, upload_id: str) -> str:
        self._check_id(upload_id)
        return self._key(f"uploads/{upload_id}")

    def _data_location(self, upload_id: str) -> str:
        self._check_id(upload_id)
        return f"objects/{upload_id}"

    # --- health -------------------------------------------------------------------------------------------------
    def check_available(self) -> None:
        """HEAD the bucket; StorageUnavailable when S3 cannot be reached or refuses us."""
        with _storage_errors("the health check"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise StorageUnavailable(detail={"storage": "s3"}) from exc

    # --- blobs --------------------------------------------------------------------------------------------------
    def stat(self, digest: Digest, location: str | None = None) -> BlobInfo | None:
        """One HEAD request: for tools (fsck), never for the protocol's HEADs, which the database answers."""
        relative = location or self._digest_location(digest)
        with _storage_errors("stat"):
            try:
                found = self.client.head_object(Bucket=self.bucket, Key=self._key(relative))
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        return BlobInfo(digest, int(found["ContentLength"]), location)

    def local_path(self, digest: Digest) -> str | None:
        return None

    def download_url(self, digest: Digest, location: str | None = None) -> str | None:
        """A presigned GET of the blob's object, valid `presign_seconds`; computed here, no request is sent (so a
        missing object is the bucket's 404 to the client, as the database said the blob exists). None without a
        presign client."""
        if self.presign_client is None:
            return None
        relative = location or self._digest_location(digest)
        with _storage_errors("presigning a pull"):  # no credentials in boto3's chain
            url = self.presign_client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(relative)},
                ExpiresIn=self.presign_seconds,
            )
        return str(url)

    def min_chunk_length(self) -> int | None:
        return self.part_size

    def open(self, digest: Digest, byte_range: ByteRange | None = None, location: str | None = None) -> Iterator[bytes]:
        """The GET is sent by the call itself, so a missing blob or an unreachable S3 is raised before any byte of a
        response is; the body then streams in chunks of at most READ_CHUNK_SIZE."""
        relative = location or self._digest_location(digest)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(relative)}
        if byte_range is not None:
            arguments["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        with _storage_errors("a read"):
            try:
                found = self.client.get_object(**arguments)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise BlobUnknown(detail={"digest": str(digest)}) from exc
                if _code(exc) == "InvalidRange":  # a range starting at the end of an empty blob
                    return iter(())
                raise
        return self._stream(found["Body"])

    @staticmethod
    def _stream(body: Any) -> Iterator[bytes]:
        try:
            while chunk := body.read(READ_CHUNK_SIZE):
                yield chunk
        except BotoCoreError as exc:
            raise StorageUnavailable(detail={"storage": "s3"}) from exc
        finally:
            body.close()

    def delete(self, digest: Digest, location: str | None = None) -> None:
        relative = location or self._digest_location(digest)
        with _storage_errors("a delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(relative))  # idempotent in S3

    # Every upload completes at a key of its own (`objects/<upload id>`) and nothing writes at a digest's key any
    # more: a collected blob's object can go after its row's transaction has committed (domain/gc.py).
    deletes_in_place = False

    def delete_blobs(self, blobs: Sequence[BlobInfo]) -> list[BlobInfo]:
        """Delete the blobs' objects (garbage collection) with DeleteObjects, DELETE_BATCH keys a request and
        `delete_threads` requests at once; the blobs whose objects could not be deleted (a key S3 reported an error
        for, or every key of a request that failed, whatever the failure). A missing key counts as deleted, whether
        S3 says nothing of it or reports it as NoSuchKey. Never raises for a failed request: the rows are gone."""
        by_key = {self._key(blob.location or self._digest_location(blob.digest)): blob for blob in blobs}
        keys = list(by_key)
        chunks = [keys[start : start + DELETE_BATCH] for start in range(0, len(keys), DELETE_BATCH)]
        if not chunks:
            return []
        with ThreadPoolExecutor(max_workers=min(self.delete_threads, len(chunks))) as pool:
            failed_keys = [key for failed in pool.map(self._delete_objects, chunks) for key in failed]
        return [by_key[key] for key in failed_keys]

    def _delete_objects(self, keys: list[str]) -> list[str]:
        """One DeleteObjects request (Quiet: only errors are listed); the keys not deleted."""
        try:
            with _storage_errors("a batch delete"):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
                )
        except (StorageUnavailable, ClientError) as exc:
            log.warning("deleting %d objects failed: %s", len(keys), type(exc).__name__)
            return keys
        except Exception:  # a bug, or an answer we cannot read: the rows are gone, so report, never raise
            log.exception("deleting %d objects failed unexpectedly", len(keys))
            return keys
        sent = set(keys)
        errors = [
            error
            for error in answer.get("Errors") or []
            if error.get("Key") in sent and error.get("Code") not in _MISSING  # already gone: deleted
        ]
        for error in errors[:5]:
            log.warning("deleting %s: %s", error.get("Key"), error.get("Code"))
        return [str(error["Key"]) for error in errors]

    # --- upload state -------------------------------------------------------------------------------------------
    def _load(self, upload_id: str) -> _State:
        key = self._state_key(upload_id)
        with _storage_errors("reading an upload"):
            try:
                found = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise UploadUnknown(detail={"upload": upload_id}) from exc
                raise
            try:
                tail = found["Body"].read()
            finally:
                found["Body"].close()
        meta = found.get("Metadata", {})
        try:
            state = _State(
                s3_upload=meta.get("s3-upload", ""),  # "" (or dropped as empty): no multipart upload yet
                next_part=int(meta["next-part"]),
                parts_size=int(meta["parts-size"]),
                algorithm=meta.get("algorithm", "sha256"),
                generation=meta["generation"],
                tail=tail,
            )
        except (KeyError, ValueError) as exc:  # not a state object of ours
            raise UploadUnknown(detail={"upload": upload_id}) from exc
        if state.next_part > 1 and not state.s3_upload:  # parts counted, but in no multipart upload
            raise UploadUnknown(detail={"upload": upload_id})
        return state

    def _save(self, upload_id: str, state: _State) -> None:
        """The commit point of an append: one PUT, atomic in S3."""
        with _storage_errors("saving an upload"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._state_key(upload_id),
                Body=state.tail,
                Metadata={
                    "s3-upload": state.s3_upload,
                    "next-part": str(state.next_part),
                    "parts-size": str(state.parts_size),
                    "algorithm": state.algorithm,
                    "generation": state.generation,
                },
            )

    def _take_hash(self, upload_id: str, state: _State) -> _RunningHash | None:
        with self._lock:
            running = self._hashes.pop(upload_id, None)
        if running is None or running.generation != state.generation or running.size != state.size:
            return None  # another process wrote since: the hash does not cover the upload's bytes
        return running

    def _remember(self, upload_id: str, running: _RunningHash) -> None:
        with self._lock:
            self._hashes[upload_id] = running
            self._hashes.move_to_end(upload_id)
            while len(self._hashes) > MAX_CACHED_HASHES:
                self._hashes.popitem(last=False)

    # --- uploads ------------------------------------------------------------------------------------------------
    def start_upload(self, upload_id: str, digest_algorithm: str = "sha256") -> None:
        """One request: the empty state (see the module's docstring for why it is written now). No multipart upload
        yet: the first whole part starts it (`_write`), so a blob smaller than a part never has one."""
        state = _State("", 1, 0, digest_algorithm, uuid.uuid4().hex, b"")
        self._save(upload_id, state)
        self._remember(upload_id, _RunningHash(digest_algorithm, hashlib.new(digest_algorithm), state.generation, 0))

    def upload_size(self, upload_id: str) -> int:
        return self._load(upload_id).size

    def _upload_part(self, upload_id: str, s3_upload: str, number: int, body: bytes) -> str:
        if number > MAX_PARTS:
            raise PayloadTooLarge(
                f"a blob in S3 has at most {MAX_PARTS} parts of {self.part_size // MiB or self.part_size} "
                f"{'MiB' if self.part_size >= MiB else 'bytes'}: raise stevedore.s3_part_size_mib"
            )
        with _storage_errors("uploading a part"):
            try:
                done = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self._key(self._data_location(upload_id)),
                    UploadId=s3_upload,
                    PartNumber=number,
                    Body=body,
                )
            except ClientError as exc:
                if _code(exc) == "NoSuchUpload":  # finished or aborted meanwhile
                    raise UploadUnknown(detail={"upload": upload_id}) from exc
                raise
        return str(done["ETag"])

    def _start_multipart(self, upload_id: str) -> str:
        with _storage_errors("starting a multipart upload"):
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(self._data_location(upload_id))
            )
        return str(created["UploadId"])

    def _drop_started(self, upload_id: str, state: _State, new_state: _State) -> None:
        """When `new_state` will not be saved: abort the multipart upload it started (none if `state` had one)."""
        if new_state.s3_upload and new_state.s3_upload != state.s3_upload:
            self._abort_multipart(self._key(self._data_location(upload_id)), new_state.s3_upload)

    def _write(
        self, upload_id: str, state: _State, running: _RunningHash | None, chunks: Iterable[bytes]
    ) -> tuple[_State, list[str], BaseException | None]:
        """Cut the tail and `chunks` into whole parts and upload them, starting the multipart upload at the first
        whole part if the state has none; the new state (not saved: its `s3_upload` differs from `state`'s when this
        started one, which the caller aborts should it not save it), the new parts' ETags, and the exception the
        chunk iterator raised, if it did (what came before it is kept). Should a part fail, a multipart upload
        started here is aborted before the error is raised."""
        buffer = bytearray(state.tail)
        s3_upload, number, parts_size = state.s3_upload, state.next_part, state.parts_size
        etags: list[str] = []
        failure: BaseException | None = None
        iterator = iter(chunks)
        try:
            while True:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:  # the client went away: keep what arrived
                    failure = exc
                    break
                if not chunk:
                    continue
                buffer += chunk
                if running is not None:
                    running.hasher.update(chunk)
                while len(buffer) >= self.part_size:
                    if not s3_upload:
                        s3_upload = self._start_multipart(upload_id)
                    etags.append(self._upload_part(upload_id, s3_upload, number, bytes(buffer[: self.part_size])))
                    del buffer[: self.part_size]
                    number += 1
                    parts_size += self.part_size
        except BaseException:
            if s3_upload and s3_upload != state.s3_upload:
                self._abort_multipart(self._key(self._data_location(upload_id)), s3_upload)
            raise
        new_state = _State(s3_upload, number, parts_size, state.algorithm, uuid.uuid4().hex, bytes(buffer))
        return new_state, etags, failure

    def append(self, upload_id: str, chunks: Iterable[bytes], offset: int | None = None) -> int:
        state = self._load(upload_id)
        if offset is not None and offset != state.size:
            size = state.size
            raise RangeInvalid(f"upload is at offset {size}, chunk starts at {offset}", detail={"size": size})
        running = self._take_hash(upload_id, state)
        new_state, etags, failure = self._write(upload_id, state, running, chunks)
        try:
            self._save(upload_id, new_state)
        except BaseException:
            self._drop_started(upload_id, state, new_state)
            raise
        if running is not None:
            running.generation, running.size = new_state.generation, new_state.size
            running.etags.extend(etags)
            self._remember(upload_id, running)
        if failure is not None:
            raise failure
        return new_state.size

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        # `place` changes nothing: the object is at the upload's own key, never where another upload's bytes are.
        state = self._load(upload_id)
        running = self._take_hash(upload_id, state)
        if running is not None and running.algorithm != digest.algorithm:
            running = None
        before = running.hasher.copy() if running is not None else None  # kept for a mismatch
        new_state, etags, failure = self._write(upload_id, state, running, final_chunks)
        if failure is not None:
            self._drop_started(upload_id, state, new_state)
            raise failure  # nothing saved: the upload stays as it was
        location = self._data_location(upload_id)
        key = self._key(location)
        size = new_state.size

        if new_state.next_part == 1:  # never a whole part: all the bytes are here, hash them and PUT them
            if hashlib.new(digest.algorithm, new_state.tail).hexdigest() != digest.hex:
                if running is not None and before is not None:
                    running.hasher = before
                    self._remember(upload_id, running)
                raise DigestInvalid(detail={"digest": str(digest)})
            with _storage_errors("committing a blob"):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=new_state.tail)
            if state.s3_upload:  # a state from before the multipart upload started lazily: one per upload
                self._abort_multipart(key, state.s3_upload)
            self._forget(upload_id)
            return BlobInfo(digest, size, location)

        s3_upload = new_state.s3_upload  # started by this call's `_write` when the state had none
        completed = False
        try:
            if new_state.tail:
                etags.append(self._upload_part(upload_id, s3_upload, new_state.next_part, new_state.tail))
            if running is not None:
                # Stayed on this process: verified from the running hash, no read-back. Completing with exactly the
                # ETags hashed makes S3 refuse the completion should another process have overwritten any part.
                if running.hasher.hexdigest() != digest.hex and before is not None:
                    # Nothing saved: the state still says what it said, parts from next-part on are ignored (and
                    # overwritten by the next append; a multipart upload this call started is aborted), and the hash
                    # of the upload's bytes is kept for the next finish.
                    running.hasher = before
                    self._remember(upload_id, running)
                    raise DigestInvalid(detail={"digest": str(digest)})
                numbered = list(enumerate(running.etags + etags, start=1))
                if self._complete(upload_id, key, s3_upload, numbered):
                    completed = True
                    self._forget(upload_id)
                    return BlobInfo(digest, size, location)
                log.warning("upload %s: a part changed under this process; verifying by reading it back", upload_id)
            committed = self._committed_parts(upload_id, key, state) if state.next_part > 1 else []
            numbered = [(number, etag) for number, etag, _ in committed]
            numbered += list(enumerate(etags, start=state.next_part))
            if not self._complete(upload_id, key, s3_upload, numbered):
                raise UploadUnknown(detail={"upload": upload_id})
            completed = True
        except BaseException:
            if not completed:
                self._drop_started(upload_id, state, new_state)
            raise
        if self._read_back_digest(key, digest.algorithm) != digest.hex:
            self._rebuild(upload_id, key, state, committed)
            raise DigestInvalid(detail={"digest": str(digest)})
        self._forget(upload_id)
        return BlobInfo(digest, size, location)

    def _complete(self, upload_id: str, key: str, s3_upload: str, numbered: list[tuple[int, str]]) -> bool:
        """Complete the multipart upload with these parts; False when S3 says a part is not the one named."""
        with _storage_errors("completing an upload"):
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=s3_upload,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in numbered]},
                )
            except ClientError as exc:
                if _code(exc) in ("InvalidPart", "InvalidPartOrder"):
                    return False
                if _code(exc) == "NoSuchUpload":
                    raise UploadUnknown(detail={"upload": upload_id}) from exc
                raise
        return True

    def _committed_parts(self, upload_id: str, key: str, state: _State) -> list[tuple[int, str, int]]:
        """The parts the state counts (1 .. next-part - 1): number, ETag, size; ListParts pages by 1,000."""
        parts: list[tuple[int, str, int]] = []
        marker = 0
        with _storage_errors("listing parts"):
            while True:
                try:
                    page = self.client.list_parts(
                        Bucket=self.bucket, Key=key, UploadId=state.s3_upload, PartNumberMarker=marker
                    )
                except ClientError as exc:
                    if _code(exc) == "NoSuchUpload":
                        raise UploadUnknown(detail={"upload": upload_id}) from exc
                    raise
                for part in page.get("Parts", []):
                    if part["PartNumber"] < state.next_part:
                        parts.append((int(part["PartNumber"]), str(part["ETag"]), int(part["Size"])))
                if not page.get("IsTruncated"):
                    break
                marker = int(page["NextPartNumberMarker"])
        if [number for number, _, _ in parts] != list(range(1, state.next_part)) or sum(
            size for _, _, size in parts
        ) != state.parts_size:
            log.error("upload %s: its parts do not match its state", upload_id)
            raise UploadUnknown(detail={"upload": upload_id})
        return parts

    def _read_back_digest(self, key: str, algorithm: str) -> str:
        hasher = hashlib.new(algorithm)
        with _storage_errors("reading a blob back"):
            found = self.client.get_object(Bucket=self.bucket, Key=key)
        for chunk in self._stream(found["Body"]):
            hasher.update(chunk)
        return hasher.hexdigest()

    def _rebuild(self, upload_id: str, key: str, state: _State, committed: list[tuple[int, str, int]]) -> None:
        """After a digest mismatch on a completed object: the upload as it was before `finish`, without moving its
        bytes through this process (server-side UploadPartCopy of each committed part's range). With no committed
        part the upload had no multipart upload (or, from before the lazy start, one this finish completed): its
        state says so, and no multipart upload is started for it."""
        if not committed:
            if state.s3_upload:
                self._save(upload_id, _State("", 1, 0, state.algorithm, uuid.uuid4().hex, state.tail))
            with _storage_errors("restoring an upload"):
                self.client.delete_object(Bucket=self.bucket, Key=key)  # the refused content: never a blob
            return
        with _storage_errors("restoring an upload"):
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
            s3_upload = created["UploadId"]
            try:
                offset = 0
                for number, _, size in committed:
                    self.client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=s3_upload,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceRange=f"bytes={offset}-{offset + size - 1}",
                    )
                    offset += size
                generation = uuid.uuid4().hex
                self._save(
                    upload_id,
                    _State(s3_upload, state.next_part, state.parts_size, state.algorithm, generation, state.tail),
                )
            except BaseException:
                self._abort_multipart(key, s3_upload)
                raise
            self.client.delete_object(Bucket=self.bucket, Key=key)  # the refused content: never a blob

    def _abort_multipart(self, key: str, s3_upload: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=s3_upload)
        except (ClientError, BotoCoreError) as exc:  # already gone, or S3 down: the bucket's lifecycle rule sweeps
            log.info("aborting multipart upload of %s: %s", key, type(exc).__name__)

    def _forget(self, upload_id: str) -> None:
        """The end of a successful finish. Deleting the state must succeed before the blob is reported: while the
        state exists, `abort` deletes the upload's object."""
        with self._lock:
            self._hashes.pop(upload_id, None)
        with _storage_errors("finishing an upload"):
            self.client.delete_object(Bucket=self.bucket, Key=self._state_key(upload_id))

    def restore(self, upload_id: str, digest: Digest) -> bool:
        return True  # each upload has a key of its own, recorded as the blob's location: never another's to take

    def release(self, upload_id: str) -> None:
        pass  # `finish` keeps nothing

    def abort(self, upload_id: str) -> None:
        self._check_id(upload_id)
        with self._lock:
            self._hashes.pop(upload_id, None)
        try:
            state = self._load(upload_id)
        except UploadUnknown:
            return  # never started, aborted already, or finished: its object (if any) is a blob now
        key = self._key(self._data_location(upload_id))
        if state.s3_upload:
            self._abort_multipart(key, state.s3_upload)
        with _storage_errors("aborting an upload"):
            self.client.delete_object(Bucket=self.bucket, Key=key)  # what a crashed finish may have completed
            self.client.delete_object(Bucket=self.bucket, Key=self._state_key(upload_id))

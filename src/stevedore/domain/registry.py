"""Domain layer: the registry protocol's use cases — pull, push, discovery, deletion — over the ports.

Writes follow one order: bytes are written (and verified) before the rows that point at them, so a failure at any
point leaves nothing visible; orphaned bytes are for garbage collection to sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from stevedore.domain.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PayloadTooLarge,
    RangeInvalid,
    StorageUnavailable,
    TooManyUploads,
    UploadUnknown,
)
from stevedore.domain.lifecycle import Event, EventAction, Lifecycle, ManifestEvent, NoLifecycle, TagChange
from stevedore.domain.manifests import parse_manifest
from stevedore.domain.model import BlobInfo, ByteRange, Digest, Reference, RepositoryName, Tag
from stevedore.domain.ports import BlobStore, Clock
from stevedore.domain.upload_tickets import UploadTickets

DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# docker pushes at most five layers at once; a hundred open sessions is far more than any client needs.
DEFAULT_MAX_OPEN_UPLOADS_PER_ACCOUNT = 100
# docker never cancels a failed upload (it retries with a fresh session), so sessions pile up: at the cap, those
# started longer ago than this are taken to be abandoned and reclaimed.
DEFAULT_ABANDONED_UPLOAD_SECONDS = 3600
# How often the end of a session also forgets the tombstones of long-expired tickets (one indexed DELETE).
PRUNE_CLOSED_UPLOADS_CHANCE = 1 / 64
# Tombstones are kept twice a ticket's lifetime: the ticket's time, the tombstone's and the pruning's come from the
# clocks of different nodes.
TOMBSTONE_SLACK = 2
MAX_PAGE = 10_000


@dataclass(frozen=True)
class UploadSession:
    id: str
    repository: RepositoryName
    account_id: int | None
    digest_algorithm: str
    created_at: datetime


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    content: bytes = b""
    artifact_type: str | None = None
    subject: Digest | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True)
class PushedManifest:
    digest: Digest
    tags: tuple[str, ...]
    subject: Digest | None


@dataclass(frozen=True)
class Page:
    items: list[str]
    has_more: bool


class RegistryStore(Protocol):
    """The registry's metadata: repositories, blob links, manifests, tags, upload sessions."""

    def repository_exists(self, name: RepositoryName) -> bool: ...

    def ensure_repository(self, name: RepositoryName, now: datetime) -> None: ...

    def add_blob(self, info: BlobInfo, now: datetime) -> BlobInfo:
        """Record that the blob store holds these bytes; the blob as recorded (the first location recorded stays).
        Idempotent. The row is held against garbage collection until the transaction ends (domain/gc.py)."""
        ...

    def hold_blob(self, digest: Digest) -> BlobInfo | None:
        """The recorded blob, held against garbage collection until the transaction ends; None when it has no row
        (any more: a collector that deleted it is waited for)."""
        ...

    def link_blob(self, name: RepositoryName, digest: Digest, now: datetime) -> None:
        """Make a recorded blob part of a repository (created if needed). Idempotent."""
        ...

    def linked_blob(self, name: RepositoryName, digest: Digest) -> BlobInfo | None: ...

    def linked_blob_sizes(self, name: RepositoryName, digests: Iterable[Digest]) -> dict[Digest, int]:
        """The sizes of those of `digests` linked into `name`, held against garbage collection until the
        transaction ends (a manifest that references them is about to be stored)."""
        ...

    def unlink_blob(self, name: RepositoryName, digest: Digest) -> bool: ...

    def add_upload(self, upload: UploadSession) -> bool:
        """Record an opened session; False when one with its id is recorded already (a concurrent first chunk)."""
        ...

    def get_upload(self, upload_id: str) -> UploadSession | None: ...

    def delete_upload(self, upload_id: str) -> bool:
        """Delete the session's row; False when there was none (a sweep or a cancel took it first)."""
        ...

    def delete_uploads_created_before(self, cutoff: datetime) -> list[str]:
        """Delete every account's upload sessions started before `cutoff`; the ids of the rows this call deleted."""
        ...

    def close_upload(self, upload_id: str, now: datetime) -> bool:
        """Leave the session's tombstone (its ticket is spent); False when it had one already (another request
        finished or cancelled it first). Its row, if any, is deleted separately (`delete_upload`)."""
        ...

    def upload_closed(self, upload_id: str) -> bool:
        """Whether the session was finished or cancelled (has a tombstone)."""
        ...

    def prune_closed_uploads(self, closed_before: datetime) -> int:
        """Forget the tombstones of sessions closed before `closed_before`; how many."""
        ...

    def count_uploads(self, account_id: int | None) -> int:
        """How many upload sessions `account_id` has open (None: those without an account)."""
        ...

    def account_uploads(
        self, account_id: int | None, *, created_before: datetime | None = None, limit: int | None = None
    ) -> list[UploadSession]:
        """`account_id`'s open upload sessions (None: those without an account), only those created before
        `created_before` if given, oldest first (ties by id), at most `limit`."""
        ...

    def blob_holders(self, digest: Digest) -> list[RepositoryName]:
        """Every repository the blob is linked into, in byte order of their names, in one query."""
        ...

    def get_manifest(self, name: RepositoryName, digest: Digest) -> StoredManifest | None: ...

    def tagged_manifest(self, name: RepositoryName, tag: Tag) -> StoredManifest | None: ...

    def present_manifests(self, name: RepositoryName, digests: Iterable[Digest]) -> set[Digest]: ...

    def put_manifest(
        self,
        name: RepositoryName,
        manifest: StoredManifest,
        blobs: Iterable[Digest],
        children: Iterable[Digest],
        now: datetime,
    ) -> None:
        """Store a manifest and what it references. Idempotent for the same digest."""
        ...

    def tag_manifest(
        self, name: RepositoryName, tag: Tag, digest: Digest, now: datetime, pushed_by: str | None = None
    ) -> Digest | None:
        """Point `tag` at the manifest (a new tag, or one that moves), recording when and by whom (an account's
        name; None: not known) in the same write. Returns the digest the tag pointed at before (None: it is new),
        read under the same lock, so that two pushes of one tag each see what the other left."""
        ...

    def delete_manifest(self, name: RepositoryName, digest: Digest) -> list[str] | None:
        """Remove a manifest and every tag that points at it: the names of those tags, or None when there was no
        such manifest."""
        ...

    def delete_tag(self, name: RepositoryName, tag: Tag) -> Digest | None:
        """Remove a tag: the digest it pointed at, or None when there was no such tag."""
        ...

    def list_tags(self, name: RepositoryName, last: str | None, limit: int) -> list[str]:
        """Tag names after `last` in byte order, at most `limit`."""
        ...

    def list_repositories(self, last: str | None, limit: int) -> list[str]:
        """Names of repositories holding at least one manifest, after `last` in byte order, at most `limit`."""
        ...

    def referrers(self, name: RepositoryName, subject: Digest) -> list[StoredManifest]:
        """Manifests of `name` whose subject is `subject` (without their content)."""
        ...


class RegistryService:
    """The protocol's use cases. `store` is the unit of work; `lookups` reads what must be known before bytes are
    streamed, so that no write lock is held while a large body is copied."""

    def __init__(
        self,
        store: RegistryStore,
        blobs: BlobStore,
        clock: Clock,
        *,
        lookups: RegistryStore | None = None,
        max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
        max_open_uploads_per_account: int = DEFAULT_MAX_OPEN_UPLOADS_PER_ACCOUNT,
        abandoned_upload_seconds: int = DEFAULT_ABANDONED_UPLOAD_SECONDS,
        before_push: Callable[[RepositoryName], None] | None = None,
        confirm_blob_bytes: bool = True,
        upload_tickets: UploadTickets | None = None,
        upload_sessions: Callable[[], contextlib.AbstractContextManager[RegistryStore]] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.store = store
        self.lookups = lookups or store
        self.blobs = blobs
        self.clock = clock
        self.max_manifest_bytes = max_manifest_bytes
        self.max_open_uploads_per_account = max_open_uploads_per_account  # 0: no limit
        self.abandoned_upload_seconds = abandoned_upload_seconds  # 0: never reclaimed
        # Runs in the push's transaction before a push writes anything into a repository: it claims the namespace on
        # a first push (Access.claim_for_push) or raises Denied, so a refused push leaves nothing behind.
        self.before_push = before_push or (lambda name: None)
        # Whether existence checks (HEAD, mounts) also ask the blob store that the bytes are there: a stat of a local
        # file is free, but against S3 each is a billed request, so there the database alone answers.
        self.confirm_blob_bytes = confirm_blob_bytes
        # Upload ids are tickets (upload_tickets.py): a POST writes nothing. Without a key, one of this process's own.
        self.upload_tickets = upload_tickets or UploadTickets(os.urandom(32))
        # A unit of work of its own, committed when its block ends: where a session's row is written before its
        # first bytes (so that a sweep or fsck never sees bytes that no committed row owns), while the request's own
        # transaction has not begun. Without one, the request's store (the fakes of the unit tests).
        self.upload_sessions = upload_sessions or (lambda: contextlib.nullcontext(self.store))
        # Quotas, immutable tags, tag history, webhooks (domain/lifecycle.py): asked and told in the unit of work.
        self.lifecycle: Lifecycle = lifecycle or NoLifecycle()

    def _before_push(self, name: RepositoryName) -> None:
        self.before_push(name)
        self.lifecycle.before_push(name)

    # --- pull ----------------------------------------------------------------------------------------
    # Pulls and discovery only read: through `lookups`, outside the unit of work, so they pay for no transaction.
    def get_manifest(self, name: RepositoryName, reference: Reference) -> StoredManifest:
        if reference.digest is not None:
            manifest = self.lookups.get_manifest(name, reference.digest)
        else:
            assert reference.tag is not None
            manifest = self.lookups.tagged_manifest(name, reference.tag)
        if manifest is None:
            if not self.lookups.repository_exists(name):
                raise NameUnknown(f"repository {name} is not known to this registry", detail={"name": name.value})
            what = f"tag {reference.tag}" if reference.tag else f"manifest {reference.digest}"
            raise ManifestUnknown(f"{what} is not in repository {name}", detail={"reference": str(reference)})
        return manifest

    def stat_blob(self, name: RepositoryName, digest: Digest) -> BlobInfo:
        """The blob as recorded when it was verified; its bytes must still be in the store."""
        linked = self.lookups.linked_blob(name, digest)
        if linked is None or not self._bytes_present(linked):
            raise BlobUnknown(detail={"digest": str(digest)})
        return linked

    def _bytes_present(self, info: BlobInfo) -> bool:
        return not self.confirm_blob_bytes or self.blobs.stat(info.digest, info.location) is not None

    def open_blob(
        self, digest: Digest, byte_range: ByteRange | None = None, location: str | None = None
    ) -> Iterator[bytes]:
        """The blob's bytes from where they were recorded (`location` of `stat_blob`'s answer)."""
        return self.blobs.open(digest, byte_range, location)

    # --- push: uploads -------------------------------------------------------------------------------
    def start_upload(self, name: RepositoryName, account_id: int | None, digest_algorithm: str = "sha256") -> str:
        """A new session's ticket. Nothing is written (unless `before_push` claims the namespace, or abandoned
        sessions are reclaimed at the cap): the session's row and bytes come with its first bytes (`append_upload`),
        or never (a whole blob in `finish_upload`)."""
        if not Digest.is_supported_algorithm(digest_algorithm):
            raise DigestInvalid(f"unsupported digest algorithm {digest_algorithm!r}")
        self._before_push(name)
        limit = self.max_open_uploads_per_account
        if limit > 0 and self.lookups.count_uploads(account_id) >= limit:
            # Already at the cap: refused now, before any byte is sent, unless abandoned sessions can be reclaimed
            # in this request's transaction (the first bytes check again, exactly: `_open_upload`). Below the cap,
            # a read and no write.
            self._check_upload_limit(self.store, account_id)
        return self.upload_tickets.issue(name, account_id, digest_algorithm, self.clock.now())

    @property
    def ticket_lifetime_seconds(self) -> int:
        """How long a ticket whose session has no row stays valid: as long as an open session counts as abandoned
        (a week when those are never reclaimed). Its tombstone, once closed, is kept as long."""
        return self.abandoned_upload_seconds if self.abandoned_upload_seconds > 0 else 7 * 24 * 3600

    def _check_upload_limit(self, store: RegistryStore, account_id: int | None) -> None:
        """Refuse to open a session (write its row) when the account already has the most it may hold open, after
        reclaiming those of its sessions that look abandoned (started more than `abandoned_upload_seconds` ago),
        oldest first.

        Counted in the transaction that then inserts the session. On SQLite writers hold the database lock from the
        start, so the limit is exact; on PostgreSQL two concurrent starts can both see one slot left and both pass,
        so an account may end up a few sessions (at most its concurrent requests) over: a cap against piling up, not
        a quota."""
        limit = self.max_open_uploads_per_account
        if limit <= 0:
            return
        open_uploads = store.count_uploads(account_id)
        if open_uploads < limit:
            return
        if self.abandoned_upload_seconds > 0 and self._reclaim_abandoned_uploads(store, account_id):
            open_uploads = store.count_uploads(account_id)
            if open_uploads < limit:
                return
        message = (
            f"{open_uploads} uploads are open for this account, the most it may have: finish some, or cancel those "
            "you no longer need (DELETE on their upload URL), before starting another"
        )
        detail: dict[str, Any] = {"open": open_uploads, "limit": limit}
        oldest = store.account_uploads(account_id, limit=1) if self.abandoned_upload_seconds > 0 else []
        if oldest:
            started = _utc(oldest[0].created_at)
            reclaimable_at = started + timedelta(seconds=self.abandoned_upload_seconds)
            wait = max(1, math.ceil((reclaimable_at - self.clock.now()).total_seconds()))
            message += (
                f"; the oldest, started {started:%Y-%m-%d %H:%M:%S} UTC, counts as abandoned after "
                f"{reclaimable_at:%Y-%m-%d %H:%M:%S} UTC (in {wait} seconds): an upload started then reclaims it"
            )
            detail["reclaimable_at"] = reclaimable_at.isoformat()
        refusal = TooManyUploads(message, detail=detail)
        if oldest:
            refusal.retry_after_seconds = wait
        raise refusal

    def _reclaim_abandoned_uploads(self, store: RegistryStore, account_id: int | None) -> int:
        """Abort the account's sessions started more than `abandoned_upload_seconds` ago; how many.

        Their age is when they were started: a session still receiving chunks after that long is reclaimed too
        (the default hour is far beyond what a push of even a large layer takes). Rows go before bytes, as in
        `cancel_upload`; it happens in the request's transaction, so should that roll back the rows come back
        without their bytes: such an upload answers BLOB_UPLOAD_UNKNOWN and is reclaimed again the next time."""
        cutoff = self.clock.now() - timedelta(seconds=self.abandoned_upload_seconds)
        abandoned = store.account_uploads(account_id, created_before=cutoff)
        for upload in abandoned:
            if store.delete_upload(upload.id):
                store.close_upload(upload.id, self.clock.now())
            self.blobs.abort(upload.id)
        return len(abandoned)

    # --- administration of open uploads (the command line) -------------------------------------------------------
    def account_uploads(self, account_id: int, older_than_seconds: float | None = None) -> list[UploadSession]:
        """An account's open upload sessions, oldest first; with `older_than_seconds`, those started longer ago."""
        cutoff = None if older_than_seconds is None else self.clock.now() - timedelta(seconds=older_than_seconds)
        return self.store.account_uploads(account_id, created_before=cutoff)

    def account_upload_ids(self, account_id: int) -> list[str]:
        """The ids of every upload session an account has open; its rows go with the account (ON DELETE CASCADE),
        so collect them before deleting it and abort their bytes (`abort_upload_bytes`) once that has committed."""
        return [upload.id for upload in self.store.account_uploads(account_id)]

    def received_bytes(self, upload_id: str) -> int | None:
        """How many bytes an upload has received so far; None when the blob store holds none for it."""
        try:
            return self.blobs.upload_size(upload_id)
        except UploadUnknown:
            return None

    def forget_uploads(self, upload_ids: Iterable[str]) -> None:
        """Delete upload sessions' rows. Their bytes stay: abort them with `abort_upload_bytes` once this
        transaction has committed, so that no committed row ever points at bytes that are gone."""
        for upload_id in upload_ids:
            if self.store.delete_upload(upload_id):
                self.store.close_upload(upload_id, self.clock.now())

    def sweep_abandoned_uploads(self, older_than_seconds: float, now: datetime | None = None) -> list[str]:
        """Delete the rows of every account's upload sessions started more than `older_than_seconds` before `now`;
        the ids of those this call deleted. Abort their bytes (`abort_upload_bytes`) once this transaction has
        committed. Sessions younger than that are never touched; one a concurrent finish or cancel deleted first
        is not among the ids (the store deletes and reports in one statement), so its bytes are left alone."""
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must be 0 or more")
        now = now or self.clock.now()
        swept = self.store.delete_uploads_created_before(now - timedelta(seconds=older_than_seconds))
        for upload_id in swept:  # their tickets are spent
            self.store.close_upload(upload_id, now)
        self.store.prune_closed_uploads(now - timedelta(seconds=TOMBSTONE_SLACK * self.ticket_lifetime_seconds))
        return swept

    def abort_upload_bytes(self, upload_ids: Iterable[str]) -> None:
        """Remove uploads' bytes from the blob store, after the transaction that removed their rows has committed.
        Idempotent; a PATCH that passed its check before the rows went finds its upload gone."""
        for upload_id in upload_ids:
            self.blobs.abort(upload_id)

    def _owned_upload(self, name: RepositoryName, upload_id: str, account_id: int | None) -> _OwnedUpload:
        """The session `upload_id` names, if its ticket was issued for this repository and this caller and it is
        still open; otherwise it does not exist for them. `opened` tells whether it has a row (and bytes)."""
        ticket = self.upload_tickets.read(upload_id, name, account_id)
        if ticket is None:
            raise UploadUnknown(detail={"upload": upload_id})
        upload = self.lookups.get_upload(ticket.session_id)
        if upload is not None:
            if upload.repository != name or upload.account_id != account_id:
                raise UploadUnknown(detail={"upload": upload_id})
            return _OwnedUpload(ticket.session_id, upload.digest_algorithm, opened=True)
        expires = ticket.created_at + timedelta(seconds=self.ticket_lifetime_seconds)
        if not ticket.signed or self.clock.now() >= expires or self.lookups.upload_closed(ticket.session_id):
            raise UploadUnknown(detail={"upload": upload_id})
        return _OwnedUpload(ticket.session_id, ticket.digest_algorithm, opened=False)

    def upload_status(self, name: RepositoryName, upload_id: str, account_id: int | None) -> int:
        upload = self._owned_upload(name, upload_id, account_id)
        return self.blobs.upload_size(upload.id) if upload.opened else 0

    def append_upload(
        self,
        name: RepositoryName,
        upload_id: str,
        account_id: int | None,
        chunks: Iterable[bytes],
        start: int | None = None,
    ) -> int:
        """Append a chunk; with `start` (from Content-Range) it must continue exactly where the upload is. The
        session's first chunk opens it: its row is committed (`upload_sessions`), then its bytes are started."""
        upload = self._owned_upload(name, upload_id, account_id)
        if not upload.opened:
            if start not in (None, 0):
                raise RangeInvalid("the upload has received no bytes: a first chunk starts at 0")
            self._open_upload(name, upload, account_id)
        return self.blobs.append(upload.id, chunks, start)  # checks `start` under the upload's lock

    def _open_upload(self, name: RepositoryName, upload: _OwnedUpload, account_id: int | None) -> None:
        now = self.clock.now()
        with self.upload_sessions() as store:
            self._check_upload_limit(store, account_id)
            if not store.add_upload(UploadSession(upload.id, name, account_id, upload.digest_algorithm, now)):
                return  # another request's first chunk opened it just now (PATCHes must come one at a time)
            if store.upload_closed(upload.id):  # finished or cancelled since it was read: rolled back
                raise UploadUnknown(detail={"upload": upload.id})
        try:
            self.blobs.start_upload(upload.id, upload.digest_algorithm)
        except FileExistsError:
            with contextlib.suppress(Exception), self.upload_sessions() as store:
                store.delete_upload(upload.id)
            raise UploadUnknown(f"upload {upload.id} is being written by another request") from None
        except BaseException:
            # Storage unavailable or full: the row goes again (best effort), so the ticket is as fresh as before
            # and the client's retry opens it anew; a row left behind is reclaimed like any abandoned session.
            with contextlib.suppress(Exception), self.upload_sessions() as store:
                store.delete_upload(upload.id)
            raise

    def finish_upload(
        self,
        name: RepositoryName,
        upload_id: str,
        account_id: int | None,
        digest: Digest,
        chunks: Iterable[bytes] = (),
        start: int | None = None,
    ) -> BlobInfo:
        upload = self._owned_upload(name, upload_id, account_id)
        if upload.opened:
            if start is not None and start != self.blobs.upload_size(upload.id):
                raise RangeInvalid("the final chunk does not continue the upload")
        elif start not in (None, 0):
            raise RangeInvalid("the upload has received no bytes: the final chunk starts at 0")
        self._before_push(name)
        if upload.opened:
            # Verified and kept, not yet placed: a push the lifecycle refuses (a quota) leaves no bytes behind.
            info = self.blobs.finish(upload.id, digest, chunks, place=False)  # a mismatch leaves the upload as it was
            written = upload.id
        else:
            # The whole blob is in this request (docker's small blobs): as a POST ?digest=, never a row, and bytes
            # under an id of their own, never the ticket's (an S3 blob stays at its upload's key: two requests on one
            # ticket must not share one). On a digest mismatch the ticket stays valid with nothing received, as an
            # opened session stays as it was.
            written, info = self._write_whole(upload.digest_algorithm, digest, chunks)
        try:
            info = self._record_blob(name, info, written)
        finally:
            self.blobs.release(written)
        gone = upload.opened and not self.store.delete_upload(upload.id)
        if gone or not self._close(upload.id):
            # `stevedore upload sweep` (or a cancel, or another finish) took the session meanwhile and aborts its
            # bytes: the blob row must not stay behind without them. Raising rolls this push's transaction back.
            raise UploadUnknown(f"upload {upload_id} was cancelled or swept while it was being finished")
        return info

    def _close(self, upload_id: str) -> bool:
        """Spend the session's ticket (its tombstone); now and then, forget tombstones of tickets long expired."""
        now = self.clock.now()
        if random.random() < PRUNE_CLOSED_UPLOADS_CHANCE:
            self.store.prune_closed_uploads(now - timedelta(seconds=TOMBSTONE_SLACK * self.ticket_lifetime_seconds))
        return self.store.close_upload(upload_id, now)

    def _record_blob(self, name: RepositoryName, info: BlobInfo, upload_id: str) -> BlobInfo:
        """Record a verified blob and link it into `name`; the blob as recorded. When the digest was recorded
        before at another location (a re-push to a store that chose a new place), the first stays and the new
        copy is deleted at once: nothing points at it, so nothing is orphaned.

        Where the store derives the place from the digest, garbage collection may have unlinked that file, which
        this push's bytes were linked to or found at, just before the row was held (domain/gc.py): once the row is
        held, the store puts the bytes back from what `finish` kept of upload `upload_id` (released by the caller).
        Only a push whose bytes are nowhere is refused with nothing recorded, to be pushed again."""
        try:
            self.lifecycle.before_blob(name, info.digest, info.size)
        except BaseException:
            # Refused bytes are not kept. Where the store derives the place from the digest, `finish(place=False)`
            # placed nothing and the caller's `release` drops them; an upload's own object (S3) goes now.
            if info.location is not None:
                with contextlib.suppress(StorageUnavailable):
                    self.blobs.delete(info.digest, info.location)
            raise
        now = self.clock.now()
        recorded = self.store.add_blob(info, now)
        # The bytes go to their place now (`finish(place=False)` kept them), or are found there.
        if recorded.location is None and not self.blobs.restore(upload_id, info.digest):
            raise UploadUnknown(
                f"blob {info.digest} was garbage-collected while this upload finished: push it again",
                detail={"digest": str(info.digest)},
            )
        self.store.link_blob(name, info.digest, now)
        if info.location is None or recorded.location == info.location:
            return recorded
        with contextlib.suppress(StorageUnavailable):  # else an unreferenced object, for `stevedore fsck` to find
            self.blobs.delete(info.digest, info.location)
        return recorded

    def cancel_upload(self, name: RepositoryName, upload_id: str, account_id: int | None) -> None:
        upload = self._owned_upload(name, upload_id, account_id)
        if not upload.opened:
            self._close(upload.id)
            return
        if self.store.delete_upload(upload.id):
            self._close(upload.id)
        self.blobs.abort(upload.id)

    def push_blob(self, name: RepositoryName, digest: Digest, chunks: Iterable[bytes]) -> BlobInfo:
        """A whole blob in one request (POST ?digest=): verified and committed, or nothing at all."""
        self._before_push(name)
        upload_id, info = self._write_whole(digest.algorithm, digest, chunks)
        try:
            return self._record_blob(name, info, upload_id)
        finally:
            self.blobs.release(upload_id)

    def _write_whole(self, algorithm: str, digest: Digest, chunks: Iterable[bytes]) -> tuple[str, BlobInfo]:
        """A whole blob written under an upload id of its own (returned, for `release`), hashed with `algorithm`:
        verified, or nothing kept."""
        upload_id = str(uuid.uuid4())
        self.blobs.start_upload(upload_id, algorithm)
        try:
            return upload_id, self.blobs.finish(upload_id, digest, chunks, place=False)
        except BaseException:
            self.blobs.abort(upload_id)
            raise

    def mount_blob(self, name: RepositoryName, source: RepositoryName, digest: Digest) -> BlobInfo | None:
        """Link a blob from `source` into `name` without copying bytes; None when the source lacks it."""
        if self.store.linked_blob(source, digest) is None:
            return None
        held = self.store.hold_blob(digest)  # against garbage collection: a link from `source` may go meanwhile
        if held is None or not self._bytes_present(held):
            return None
        self._before_push(name)
        self.lifecycle.before_blob(name, digest, held.size)
        self.store.link_blob(name, digest, self.clock.now())
        return held

    def mount_blob_from_any(
        self, name: RepositoryName, digest: Digest, may_pull: Callable[[RepositoryName], bool]
    ) -> BlobInfo | None:
        """A mount without `from` (the spec lets a registry pick the source): link the blob into `name` from any
        repository that holds it and passes `may_pull`; None when none does.

        Repositories failing `may_pull` must stay invisible, also through timing: one query lists every holder, and
        `may_pull` is asked about each of them with no early exit, so the work depends on how many repositories hold
        the blob, never on which of them the caller may not read, nor on where they sort."""
        holders = self.store.blob_holders(digest)
        allowed = [holder for holder in holders if may_pull(holder)]  # all of them: no short-circuit
        if not allowed:
            return None
        source = name if name in allowed else allowed[0]  # already here: linking again changes nothing
        return self.mount_blob(name, source, digest)

    # --- push: manifests -----------------------------------------------------------------------------
    def put_manifest(
        self,
        name: RepositoryName,
        reference: Reference,
        body: bytes,
        content_type: str | None,
        extra_tags: Iterable[str] = (),
        pushed_by: str | None = None,
    ) -> PushedManifest:
        """Store a manifest, and point its tags at it (the reference's tag and `extra_tags`), recording `pushed_by`
        — the caller's account name — on each tag. A push by digest alone tags nothing and records no one."""
        if len(body) > self.max_manifest_bytes:
            raise PayloadTooLarge(f"manifests are limited to {self.max_manifest_bytes} bytes")
        parsed = parse_manifest(body, content_type)
        digest = Digest.of(body, reference.digest.algorithm if reference.digest else "sha256")
        if reference.digest is not None and reference.digest != digest:
            raise DigestInvalid(
                f"the manifest's digest is {digest}, not {reference.digest}", detail={"digest": str(reference.digest)}
            )
        tags = [reference.tag] if reference.tag else []
        tags += [Tag.parse(t) for t in extra_tags]

        wanted = {d.digest for d in parsed.blobs}
        have = self.store.linked_blob_sizes(name, wanted)
        for descriptor in parsed.blobs:  # every descriptor, also when two share a digest
            if descriptor.digest not in have:
                raise ManifestBlobUnknown(
                    f"blob {descriptor.digest} is unknown to the repository", detail={"digest": str(descriptor.digest)}
                )
            stored_size = have[descriptor.digest]
            if stored_size != descriptor.size:
                raise ManifestInvalid(
                    f"blob {descriptor.digest} has {stored_size} bytes, the manifest says {descriptor.size}",
                    detail={"digest": str(descriptor.digest)},
                )
        children = {d.digest for d in parsed.children}
        missing = children - self.store.present_manifests(name, children)
        if missing:
            first = sorted(missing)[0]
            raise ManifestBlobUnknown(f"manifest {first} is unknown to the repository", detail={"digest": str(first)})

        self._before_push(name)
        now = self.clock.now()
        self.store.ensure_repository(name, now)
        manifest = StoredManifest(
            digest=digest,
            media_type=parsed.media_type,
            size=len(body),
            content=body,
            artifact_type=parsed.artifact_type,
            subject=parsed.subject.digest if parsed.subject else None,
            annotations=parsed.annotations,
        )
        self.store.put_manifest(name, manifest, wanted, children, now)
        events: list[Event] = []
        for tag in tags:
            old = self.store.tag_manifest(name, tag, digest, now, pushed_by)
            events += self._tag_changed(TagChange(name, tag.value, old, digest, pushed_by, now, "push"))
        pushed = ManifestEvent(EventAction.PUSH, name, digest, manifest.media_type, manifest.size, None, pushed_by, now)
        events += [dataclasses.replace(pushed, tag=t.value) for t in tags] or [pushed]
        self.lifecycle.changed(events)
        return PushedManifest(digest, tuple(t.value for t in tags), manifest.subject)

    def _tag_changed(self, change: TagChange) -> list[Event]:
        """A tag the store has just changed: the lifecycle may refuse it (the unit of work is then rolled back)."""
        if not change.moved:
            return []  # pushed again onto the same manifest: nothing happened to it
        self.lifecycle.before_tag_change(change)
        return [change]

    def restore_tag(self, name: RepositoryName, tag: Tag, digest: Digest, actor: str | None) -> TagChange:
        """Put `tag` back on a manifest the repository still holds (an earlier digest from its history)."""
        if self.store.get_manifest(name, digest) is None:
            if not self.store.repository_exists(name):
                raise NameUnknown(detail={"name": name.value})
            raise ManifestUnknown(
                f"manifest {digest} is no longer in repository {name}: it cannot be restored",
                detail={"digest": str(digest)},
            )
        self._before_push(name)
        now = self.clock.now()
        old = self.store.tag_manifest(name, tag, digest, now, actor)
        change = TagChange(name, tag.value, old, digest, actor, now, "restore")
        events = self._tag_changed(change)
        if events:
            manifest = self.store.get_manifest(name, digest)
            events.append(
                ManifestEvent(
                    EventAction.PUSH,
                    name,
                    digest,
                    manifest.media_type if manifest else None,
                    manifest.size if manifest else None,
                    tag.value,
                    actor,
                    now,
                )
            )
            self.lifecycle.changed(events)
        return change

    # --- discovery -----------------------------------------------------------------------------------
    def list_tags(self, name: RepositoryName, last: str | None, n: int | None) -> Page:
        if not self.lookups.repository_exists(name):
            raise NameUnknown(detail={"name": name.value})
        limit = MAX_PAGE if n is None else min(n, MAX_PAGE)
        if limit <= 0:
            return Page([], False)
        found = self.lookups.list_tags(name, last, limit + 1)
        return Page(found[:limit], len(found) > limit)

    def list_repositories(self, last: str | None, n: int | None, visible: Callable[[str], bool]) -> Page:
        limit = MAX_PAGE if n is None else min(n, MAX_PAGE)
        if limit <= 0:
            return Page([], False)
        names: list[str] = []
        cursor = last
        while True:
            batch = self.lookups.list_repositories(cursor, limit + 1)
            for repo in batch:
                if visible(repo):
                    names.append(repo)
                    if len(names) > limit:
                        return Page(names[:limit], True)
            if len(batch) < limit + 1:
                return Page(names, False)
            cursor = batch[-1]

    def referrers(
        self, name: RepositoryName, subject: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        found = self.lookups.referrers(name, subject)
        if artifact_type is not None:
            found = [m for m in found if m.artifact_type == artifact_type]
        descriptors = []
        for manifest in sorted(found, key=lambda m: str(m.digest)):
            descriptor: dict[str, Any] = {
                "mediaType": manifest.media_type,
                "digest": str(manifest.digest),
                "size": manifest.size,
            }
            if manifest.artifact_type:
                descriptor["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                descriptor["annotations"] = manifest.annotations
            descriptors.append(descriptor)
        return descriptors

    # --- deletion ------------------------------------------------------------------------------------
    def delete_manifest(self, name: RepositoryName, reference: Reference, actor: str | None = None) -> None:
        """By digest: the manifest and all its tags. By tag: that tag only. `actor`: who asked (an account's name)."""
        now = self.clock.now()
        events: list[Event] = []
        if reference.digest is not None:
            removed = self.store.delete_manifest(name, reference.digest)
            deleted = removed is not None
            for tag in removed or ():
                events += self._tag_changed(TagChange(name, tag, reference.digest, None, actor, now, "delete"))
            events.append(ManifestEvent(EventAction.DELETE, name, reference.digest, None, None, None, actor, now))
        else:
            assert reference.tag is not None
            old = self.store.delete_tag(name, reference.tag)
            deleted = old is not None
            if old is not None:
                events += self._tag_changed(TagChange(name, reference.tag.value, old, None, actor, now, "delete"))
                events.append(ManifestEvent(EventAction.DELETE, name, old, None, None, reference.tag.value, actor, now))
        if not deleted:
            if not self.store.repository_exists(name):
                raise NameUnknown(detail={"name": name.value})
            raise ManifestUnknown(detail={"reference": str(reference)})
        self.lifecycle.changed(events)

    def delete_blob(self, name: RepositoryName, digest: Digest) -> None:
        """Unlink the blob from this repository; its bytes go only when garbage collection finds no user."""
        if not self.store.unlink_blob(name, digest):
            if not self.store.repository_exists(name):
                raise NameUnknown(detail={"name": name.value})
            raise BlobUnknown(detail={"digest": str(digest)})


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class _OwnedUpload:
    id: str  # the session's id (the row's, the blob store's), not its ticket
    digest_algorithm: str
    opened: bool  # it has a row and bytes; otherwise only its ticket exists


def dump_annotations(annotations: dict[str, str] | None) -> str | None:
    return json.dumps(annotations, sort_keys=True) if annotations else None

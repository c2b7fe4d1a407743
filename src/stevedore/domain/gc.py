"""Use case: online garbage collection of blobs (`stevedore gc`), while pushes and pulls go on. Pure: the ports are
handed in.

What goes: blob rows (and their bytes) that no repository links (`repository_blobs`) and no manifest references
(`manifest_references` of kind blob), recorded longer ago than the grace period. Manifests are never removed here
(untagged ones included: deployments pin digests), so an index's children, referrers and everything they reference
stay. Candidates come from indexed, paged queries on the database, never from listing the storage; bytes that no row
points at (a crashed push) are `stevedore fsck`'s to report. Abandoned upload sessions are the upload sweep's
(RegistryService.sweep_abandoned_uploads), which the command runs with it.

Races, and why none loses a referenced blob. A claim is whatever makes a blob in use again: a finished upload
(`RegistryStore.add_blob`, then the link), a mount (`hold_blob`, then the link), a manifest push (its blobs read
under `linked_blob_sizes`). Every claim first takes the blob's row: on PostgreSQL a FOR KEY SHARE lock (a new row:
its insert), on SQLite the one write lock every writer takes at BEGIN. The collector's deletion of a batch
(`GarbageStore.delete_unreferenced`) locks the candidate rows (PostgreSQL: FOR UPDATE SKIP LOCKED, so a row a claim
holds is skipped, not waited for), then, with the locks held, deletes those that are still unreferenced and past the
grace period in one statement whose fresh snapshot sees every claim that committed; a claim that comes later waits
for the lock, finds the row gone and inserts a new one (a mount gives up and the client uploads). So "decide it is
garbage and delete its row" and "claim it" are serialized, across processes and nodes alike.

The bytes. Where a store gives every upload a place of its own (S3: `objects/<upload id>`), a re-push never writes
where a collected row's bytes are, so those are deleted after the rows' transaction commits, in big parallel batches,
without holding any lock (a crash in between leaves unreferenced objects for fsck, never a row without bytes). Where
the place derives from the digest (the folder store, `deletes_in_place`), a concurrent re-push writes, or reuses,
the very file the collector is about to unlink: there the bytes are deleted inside the rows' transaction, while the
locks are held, and a claim checks that the bytes are there once it holds the row (RegistryService._record_blob, the
mount: a stat of a local file). A finish keeps its verified bytes in its upload's folder (a second hard link) until
it holds the row, so a finish that took the row after the collector committed, and finds the file unlinked (it had
reused that file, or linked its bytes there just before), puts it back (`BlobStore.restore`) and succeeds; a mount
has no bytes of its own and gives up (the client uploads). A claim that took the row first is skipped by the
collector. Should the rows' commit fail after the unlink, the rows stay without bytes, still
unreferenced: a claim's check refuses them and the next run deletes them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import BlobInfo
from stevedore.domain.ports import Clock

DEFAULT_GRACE_PERIOD = timedelta(hours=24)
DEFAULT_BATCH = 1000

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`30m`, `24h`, `7d`, `2w`, `90s` or a plain number of seconds; 0 is allowed (no grace at all)."""
    found = _DURATION.match(text)
    if found is None:
        raise InvalidInput(f"not a duration: {text!r} (use a number with s, m, h, d or w, such as 30m, 24h or 7d)")
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidInput(f"too long a duration: {text!r} (at most {MAX_DURATION_SECONDS // 86400}d)")
    return timedelta(seconds=seconds)


MAX_DURATION_SECONDS = 36500 * 86400  # a hundred years: longer is a typo, and far longer overflows


class GarbageStore(Protocol):
    """The database's side of garbage collection."""

    def unreferenced_blobs(self, created_before: datetime, after: str | None, limit: int) -> list[BlobInfo]:
        """Blob rows that nothing links or references, recorded before `created_before`, with digests after `after`
        in the database's order, at most `limit`, in that order. A read: nothing is locked."""
        ...

    def delete_unreferenced(self, digests: Sequence[str], created_before: datetime) -> list[BlobInfo]:
        """Delete the rows of these blobs that are still unreferenced and recorded before `created_before`, locking
        them first (rows a claim holds are skipped); the rows this call deleted. In the caller's transaction."""
        ...


class BlobDeleter(Protocol):
    """The storage's side: bulk deletion of collected blobs' bytes."""

    @property
    def deletes_in_place(self) -> bool:
        """True when a re-push of a digest writes its bytes where a collected blob's were (the place derives from
        the digest): they must then go while the rows are locked."""
        ...

    def delete_blobs(self, blobs: Sequence[BlobInfo]) -> list[BlobInfo]:
        """Delete these blobs' bytes (at their `location` when given); those that could not be deleted. Bytes
        already gone count as deleted."""
        ...


@dataclass
class GcProgress:
    """Running totals, handed to the progress callback after every batch."""

    scanned: int = 0  # candidates read
    collected: int = 0  # blobs whose rows were deleted (or, dry, would be)
    bytes_freed: int = 0
    failed: int = 0  # bytes that could not be deleted
    seconds: float = 0.0

    @property
    def per_minute(self) -> float:
        return self.collected * 60 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class GcResult:
    """Running totals of what was collected (a run may collect millions: no list of them is kept), and the blobs
    whose bytes could not be deleted."""

    dry_run: bool
    objects: int = 0  # blobs whose rows (and bytes) were deleted (or, dry, would be)
    bytes_freed: int = 0
    failed: list[BlobInfo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_minute(self) -> float:
        return self.objects * 60 / self.seconds if self.seconds > 0 else 0.0


class GarbageCollector:
    """`reads()` and `writes()` each give a unit of work of their own, committed when its block ends (a write
    transaction for `writes`); the collector never commits anything itself."""

    def __init__(
        self,
        reads: Callable[[], contextlib.AbstractContextManager[GarbageStore]],
        writes: Callable[[], contextlib.AbstractContextManager[GarbageStore]],
        deleter: BlobDeleter,
        clock: Clock,
        *,
        batch: int = DEFAULT_BATCH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.reads = reads
        self.writes = writes
        self.deleter = deleter
        self.clock = clock
        self.batch = batch
        self.monotonic = monotonic

    def collect(
        self,
        grace: timedelta,
        *,
        dry_run: bool = False,
        progress: Callable[[GcProgress], None] | None = None,
        result: GcResult | None = None,
    ) -> GcResult:
        """Delete every blob unreferenced and recorded more than `grace` ago, batch by batch; with `dry_run` only
        count them (nothing is written). Blobs recorded within `grace` are never touched. `result`, when given, is
        filled in batch by batch (and returned): should a batch fail, the caller still knows what was done."""
        if grace < timedelta(0):
            raise InvalidInput("the grace period cannot be negative")
        try:
            cutoff = self.clock.now() - grace
        except OverflowError:
            raise InvalidInput("the grace period is too long") from None
        started = self.monotonic()
        result = result if result is not None else GcResult(dry_run)
        totals = GcProgress()
        after: str | None = None
        while True:
            with self.reads() as store:
                page = store.unreferenced_blobs(cutoff, after, self.batch)
            if not page:
                break
            after = str(page[-1].digest)
            totals.scanned += len(page)
            failed: list[BlobInfo] = []
            if dry_run:
                collected = page
            else:
                collected, failed = self._delete(page, cutoff)
            freed = sum(blob.size for blob in collected)
            result.objects += len(collected)
            result.bytes_freed += freed
            result.failed += failed
            totals.collected += len(collected)
            totals.bytes_freed += freed
            totals.failed += len(failed)
            totals.seconds = self.monotonic() - started
            result.seconds = totals.seconds  # so far, should a later batch fail
            if progress is not None:
                progress(totals)
            if len(page) < self.batch:
                break
        result.seconds = self.monotonic() - started
        return result

    def _delete(self, page: list[BlobInfo], cutoff: datetime) -> tuple[list[BlobInfo], list[BlobInfo]]:
        digests = [str(blob.digest) for blob in page]
        if self.deleter.deletes_in_place:
            # The bytes go while the rows are locked: a claim waiting for them then finds the bytes gone (and
            # refuses) or writes them after (see the module's docstring). Should the deletion raise, the rows stay.
            with self.writes() as store:
                gone = store.delete_unreferenced(digests, cutoff)
                failed = self.deleter.delete_blobs(gone) if gone else []
        else:
            with self.writes() as store:
                gone = store.delete_unreferenced(digests, cutoff)
            failed = self.deleter.delete_blobs(gone) if gone else []  # no lock held: nobody writes there again
        not_deleted = {blob.digest for blob in failed}
        return [blob for blob in gone if blob.digest not in not_deleted], failed

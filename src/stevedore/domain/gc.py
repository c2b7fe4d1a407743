"""Use case: online garbage collection of blobs (`stevedore gc`), while pushes and pulls go on. Pure: the ports are
handed in.

What goes: blob rows (and their bytes) that no repository links (`repository_blobs`) and no manifest references
(`manifest_references` of kind blob), recorded longer ago than the grace period. The collector never removes a
manifest (untagged ones included: deployments pin digests), so an index's children, referrers and everything they
reference stay; only retention rules do, when a namespace opts in (`Retention`, at the end of this module, run by
the command before the collector so that what it frees goes in the same run). Candidates come from indexed, paged
queries on the database, never from listing the storage; bytes that no row points at (a crashed push) are `stevedore
fsck`'s to report. Abandoned upload sessions are the upload sweep's (RegistryService.sweep_abandoned_uploads), which
the command runs with it.

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
from stevedore.domain.rules import (
    ManifestState,
    RuleKind,
    TagRule,
    TagState,
    manifests_to_remove,
    tags_to_remove,
    untagged_cutoff,
)

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


# --- retention -------------------------------------------------------------------------------------------------------
#
# Retention rules (domain/rules.py) remove tags, and manifests that have had no tag for long, in the namespaces that
# opt in. Decisions are made on a read of each repository; every removal is then checked again in the write that
# makes it, against what committed meanwhile, with the rows it depends on locked, so a push going on is never undone:
#
# - A tag is deleted only if it still points at the manifest it pointed at when read and was not pushed since
#   (`RetentionStore.remove_tag`): a push that moved it, or pushed it again, meanwhile keeps it. A push holds the
#   tag's row (FOR UPDATE) while it moves it; the deletion waits for it and then finds the row changed. A push that
#   comes after the deletion finds no row and creates the tag anew. Each removal is recorded in the tag history
#   (cause "retention"), which keeps its manifest for `stevedore.tag_history_days`, so it can be put back.
# - An untagged manifest is removed (`RetentionStore.remove_manifest`) only once its row is locked (PostgreSQL: FOR
#   UPDATE SKIP LOCKED, so a push tagging it right now, which holds that lock, makes it skipped) and a fresh
#   statement finds it still untagged, still old, no index of the repository listing it, its subject (if it is a
#   referrer) gone, and no recent tag history naming it. A push of the same manifest waits for the removal and
#   stores it again. Its blob links go with it when no other manifest of the repository references the blob and the
#   link is older than the grace period: the blob rows locked first (FOR UPDATE SKIP LOCKED; a manifest push holds
#   the blob rows it read, FOR KEY SHARE, until it commits, so a blob a push is using is skipped), then the links
#   deleted by a statement that checks again that no manifest of the repository references them. A push that reads
#   the blob while retention holds it waits, then reads its links again and no longer finds this one; it is told to
#   upload the blob (MANIFEST_BLOB_UNKNOWN), as is a client that checked the blob just before the removal: it must
#   push again. Unlinked and unreferenced, the blob is then the collector's, with the same guarantees as any other.
# - Races that stay (as for a manifest deleted through the API): an index pushed at the very moment one of its old,
#   untagged children is removed may list a child the repository no longer holds (`stevedore fsck` reports it).


@dataclass
class RetentionResult:
    """What retention removed (or, dry, would remove), per repository, in the order it was decided."""

    dry_run: bool
    tags: list[tuple[str, TagState]] = field(default_factory=list)  # (repository, tag)
    manifests: list[tuple[str, ManifestState]] = field(default_factory=list)
    links_removed: int = 0  # blob links that went with the manifests (their blobs are then the collector's)
    history_pruned: int = 0  # tag history rows older than stevedore.tag_history_days
    skipped: int = 0  # decided on the read, but a concurrent write changed them: kept

    @property
    def repositories(self) -> list[str]:
        return sorted({name for name, _ in self.tags} | {name for name, _ in self.manifests})

    @property
    def removed_something(self) -> bool:
        return bool(self.tags or self.manifests)


class RetentionStore(Protocol):
    """The database's side of retention."""

    def retention_rules(self) -> list[TagRule]:
        """Every rule of the namespaces that have at least one retention rule: their immutable rules too."""
        ...

    def repositories(self, namespace: str) -> list[str]:
        """The repositories of `namespace` (the bare name and those under `namespace/`), by name."""
        ...

    def tag_states(self, repository: str) -> list[TagState]: ...

    def manifest_states(self, repository: str) -> list[ManifestState]: ...

    def history_digests(self, repository: str, since: datetime | None) -> set[str]:
        """Digests the repository's tag history names (before or after a move) since `since` (None: ever)."""
        ...

    def remove_tag(self, repository: str, state: TagState, now: datetime) -> bool:
        """Delete the tag if it still points at `state.digest` and was not pushed after `state.pushed_at`, and
        record its removal in the tag history (cause "retention", no actor); whether it was deleted."""
        ...

    def remove_manifest(
        self,
        repository: str,
        digest: str,
        *,
        pushed_before: datetime,
        history_since: datetime | None,
        links_before: datetime,
    ) -> int | None:
        """Remove the manifest if it still qualifies (untagged, pushed before `pushed_before`, listed by no index of
        the repository, no subject held, not named in the tag history since `history_since`), with the blob links
        no other manifest of the repository references, created before `links_before`: how many links went, or
        None when it no longer qualifies (kept)."""
        ...

    def prune_history(self, before: datetime) -> int:
        """Forget tag history rows older than `before`; how many."""
        ...


class Retention:
    """Applies every retention rule, repository by repository. `reads()` and `writes()` as for the collector; each
    write is a short transaction of at most `batch` removals."""

    def __init__(
        self,
        reads: Callable[[], contextlib.AbstractContextManager[RetentionStore]],
        writes: Callable[[], contextlib.AbstractContextManager[RetentionStore]],
        clock: Clock,
        *,
        batch: int = 100,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.reads = reads
        self.writes = writes
        self.clock = clock
        self.batch = batch

    def apply(
        self,
        *,
        tag_history_days: int,
        grace: timedelta,
        dry_run: bool = False,
        result: RetentionResult | None = None,
    ) -> RetentionResult:
        """Remove what the rules say goes (`dry_run`: only list it). Tag history older than `tag_history_days` is
        pruned too (0: kept for ever). Blob links younger than `grace` stay. `result` is filled in as it goes."""
        result = result if result is not None else RetentionResult(dry_run)
        now = self.clock.now()
        history_since = now - timedelta(days=tag_history_days) if tag_history_days > 0 else None
        with self.reads() as store:
            rules = store.retention_rules()
        by_namespace: dict[str, list[TagRule]] = {}
        for rule in rules:
            by_namespace.setdefault(rule.namespace, []).append(rule)
        for namespace in sorted(by_namespace):
            with self.reads() as store:
                names = store.repositories(namespace)
            for repository in names:
                self._repository(repository, by_namespace[namespace], now, history_since, grace, result)
        if history_since is not None and not dry_run:
            with self.writes() as store:
                result.history_pruned += store.prune_history(history_since)
        return result

    def _repository(
        self,
        repository: str,
        rules: list[TagRule],
        now: datetime,
        history_since: datetime | None,
        grace: timedelta,
        result: RetentionResult,
    ) -> None:
        relevant = [rule for rule in rules if rule.covers(repository)]
        if not any(rule.kind is RuleKind.RETENTION for rule in relevant):
            return
        if any(rule.keeps_tags for rule in relevant):
            with self.reads() as store:
                doomed_tags = tags_to_remove(relevant, repository, store.tag_states(repository), now)
            for start in range(0, len(doomed_tags), self.batch):
                chunk = doomed_tags[start : start + self.batch]
                if result.dry_run:
                    result.tags += [(repository, state) for state in chunk]
                    continue
                with self.writes() as store:
                    removed = [state for state in chunk if store.remove_tag(repository, state, now)]
                result.tags += [(repository, state) for state in removed]
                result.skipped += len(chunk) - len(removed)
        cutoff = untagged_cutoff(relevant, repository, now)
        if cutoff is None:
            return
        with self.reads() as store:
            states = store.manifest_states(repository)
            recent = store.history_digests(repository, history_since)
        doomed = manifests_to_remove(states, cutoff, recent)
        by_digest = {state.digest: state for state in states}
        for start in range(0, len(doomed), self.batch):
            digests = doomed[start : start + self.batch]
            if result.dry_run:
                result.manifests += [(repository, by_digest[digest]) for digest in digests]
                continue
            with self.writes() as store:
                for digest in digests:
                    links = store.remove_manifest(
                        repository,
                        digest,
                        pushed_before=cutoff,
                        history_since=history_since,
                        links_before=now - grace,
                    )
                    if links is None:
                        result.skipped += 1
                    else:
                        result.manifests.append((repository, by_digest[digest]))
                        result.links_removed += links


class LinkStore(Protocol):
    def repository_ids_after(self, after: int, limit: int) -> list[int]: ...

    def dangling_links(self, repository_id: int, links_before: datetime, limit: int) -> list[str]:
        """Digests the repository links, linked before `links_before`, that none of its manifests references."""
        ...

    def unlink_dangling(self, repository_id: int, digests: list[str], links_before: datetime) -> int:
        """Unlink those still dangling (locked against a push that uses them); how many went."""
        ...


@dataclass
class LinkSweepResult:
    dry_run: bool
    unlinked: int = 0  # links removed (or, dry, found)
    repositories: int = 0  # repositories that had some


class DanglingLinks:
    """Blob links that no manifest of their repository references any more, older than the grace period: the links
    of a deleted manifest's layers, or of blobs uploaded for a push that never came. Unlinked, their blobs are the
    collector's in the same run (when no other repository links them), so deleting an image frees its storage.
    A link made again (a layer uploaded or mounted again) is young again (SqlRegistryStore.link_blob), so a push in
    progress keeps its blobs for the grace period; on PostgreSQL a manifest push holds the blobs it checked, which
    the unlink skips."""

    def __init__(
        self,
        reads: Callable[[], contextlib.AbstractContextManager[LinkStore]],
        writes: Callable[[], contextlib.AbstractContextManager[LinkStore]],
        clock: Clock,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.reads = reads
        self.writes = writes
        self.clock = clock
        self.batch = batch

    def apply(
        self, grace: timedelta, *, dry_run: bool = False, result: LinkSweepResult | None = None
    ) -> LinkSweepResult:
        if grace < timedelta(0):
            raise InvalidInput("the grace period cannot be negative")
        result = result or LinkSweepResult(dry_run)
        links_before = self.clock.now() - grace
        after = 0
        while True:
            with self.reads() as store:
                ids = store.repository_ids_after(after, self.batch)
            for repository_id in ids:
                found = 0
                while True:
                    with self.reads() as store:
                        dangling = store.dangling_links(repository_id, links_before, self.batch)
                    if not dangling:
                        break
                    if dry_run:
                        found = len(dangling)  # at most a batch a repository: a dry run's count is a floor
                        break
                    with self.writes() as store:
                        gone = store.unlink_dangling(repository_id, dangling, links_before)
                    found += gone
                    if gone == 0 or len(dangling) < self.batch:
                        break  # the rest are held by pushes: the next run
                if found:
                    result.unlinked += found
                    result.repositories += 1
            if len(ids) < self.batch:
                return result
            after = ids[-1]

"""The garbage collector's decisions (domain/gc.py) over in-memory fakes: what goes, what stays, what a dry run
changes (nothing), and when the bytes go relative to the rows' commit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from stevedore.domain.errors import InvalidInput, UploadUnknown
from stevedore.domain.gc import DanglingLinks, GarbageCollector, GcProgress, GcResult, parse_duration
from stevedore.domain.model import BlobInfo, Digest, RepositoryName
from stevedore.domain.registry import RegistryService
from tests.fakes import InMemoryBlobStore, InMemoryRegistryStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class InMemoryGarbageStore:
    """Blob rows with their creation time, links and manifest references; a log of commits."""

    def __init__(self, log: list[str]) -> None:
        self.rows: dict[str, tuple[BlobInfo, datetime]] = {}
        self.linked: set[str] = set()
        self.referenced: set[str] = set()
        self.log = log

    def add(self, data: bytes, age: timedelta, location: str | None = None) -> BlobInfo:
        info = BlobInfo(Digest.of(data), len(data), location)
        self.rows[str(info.digest)] = (info, NOW - age)
        return info

    def _unreferenced(self, digest: str, created_before: datetime) -> bool:
        _, created = self.rows[digest]
        return created < created_before and digest not in self.linked and digest not in self.referenced

    def unreferenced_blobs(self, created_before: datetime, after: str | None, limit: int) -> list[BlobInfo]:
        found = sorted(d for d in self.rows if (after is None or d > after) and self._unreferenced(d, created_before))
        return [self.rows[d][0] for d in found[:limit]]

    def delete_unreferenced(self, digests: Sequence[str], created_before: datetime) -> list[BlobInfo]:
        gone = [self.rows.pop(d)[0] for d in digests if d in self.rows and self._unreferenced(d, created_before)]
        self.log.append(f"delete rows {len(gone)}")
        return gone


class InMemoryDeleter:
    def __init__(self, log: list[str], in_place: bool, failing: set[str] | None = None) -> None:
        self.deletes_in_place = in_place
        self.log = log
        self.deleted: list[BlobInfo] = []
        self.failing = failing or set()

    def delete_blobs(self, blobs: Sequence[BlobInfo]) -> list[BlobInfo]:
        self.log.append(f"delete bytes {len(blobs)}")
        failed = [blob for blob in blobs if str(blob.digest) in self.failing]
        self.deleted += [blob for blob in blobs if blob not in failed]
        return failed


def collector(in_place: bool = True, batch: int = 1000, failing: set[str] | None = None):
    log: list[str] = []
    store = InMemoryGarbageStore(log)
    deleter = InMemoryDeleter(log, in_place, failing)

    @contextlib.contextmanager
    def reads() -> Iterator[InMemoryGarbageStore]:
        yield store

    @contextlib.contextmanager
    def writes() -> Iterator[InMemoryGarbageStore]:
        yield store
        log.append("commit")

    return GarbageCollector(reads, writes, deleter, FixedClock(), batch=batch), store, deleter, log


def test_only_unreferenced_blobs_older_than_the_grace_period_go():
    gc, store, deleter, _ = collector()
    old = store.add(b"old garbage", timedelta(days=2))
    young = store.add(b"young garbage", timedelta(hours=1))
    linked = store.add(b"linked", timedelta(days=9))
    referenced = store.add(b"referenced by a manifest", timedelta(days=9))
    store.linked.add(str(linked.digest))
    store.referenced.add(str(referenced.digest))

    result = gc.collect(timedelta(hours=24))

    assert result.objects == 1
    assert result.bytes_freed == old.size
    assert deleter.deleted == [old]
    assert set(store.rows) == {str(young.digest), str(linked.digest), str(referenced.digest)}


def test_a_dry_run_counts_and_changes_nothing():
    gc, store, deleter, log = collector()
    garbage = [store.add(f"garbage {i}".encode(), timedelta(days=2)) for i in range(3)]
    result = gc.collect(timedelta(0), dry_run=True)
    assert result.dry_run
    assert result.objects == 3
    assert result.bytes_freed == sum(blob.size for blob in garbage)
    assert len(store.rows) == 3
    assert deleter.deleted == []
    assert log == []


def test_in_place_bytes_go_before_the_rows_commit_and_keyed_ones_after():
    gc, store, _, log = collector(in_place=True)
    store.add(b"garbage", timedelta(days=2))
    gc.collect(timedelta(0))
    assert log == ["delete rows 1", "delete bytes 1", "commit"]

    gc, store, _, log = collector(in_place=False)
    store.add(b"garbage", timedelta(days=2), location="objects/an-upload")
    gc.collect(timedelta(0))
    assert log == ["delete rows 1", "commit", "delete bytes 1"]


def test_a_blob_claimed_between_the_read_and_the_delete_stays():
    gc, store, deleter, _ = collector(batch=10)
    claimed = store.add(b"about to be re-pushed", timedelta(days=2))
    original = store.delete_unreferenced

    def claim_first(digests: Sequence[str], created_before: datetime) -> list[BlobInfo]:
        store.linked.add(str(claimed.digest))  # a finish or a mount took the row first
        return original(digests, created_before)

    store.delete_unreferenced = claim_first  # type: ignore[method-assign]
    result = gc.collect(timedelta(0))
    assert (result.objects, result.bytes_freed) == (0, 0)
    assert deleter.deleted == []
    assert str(claimed.digest) in store.rows


def test_batches_page_through_every_candidate_and_report_progress():
    gc, store, deleter, _ = collector(batch=2)
    for i in range(5):
        store.add(f"garbage {i}".encode(), timedelta(days=2))
    seen: list[tuple[int, int]] = []

    def progress(totals: GcProgress) -> None:
        seen.append((totals.scanned, totals.collected))

    result = gc.collect(timedelta(0), progress=progress)
    assert (result.objects, result.bytes_freed) == (5, 5 * len(b"garbage 0"))
    assert len(deleter.deleted) == 5
    assert store.rows == {}
    assert seen == [(2, 2), (4, 4), (5, 5)]


def test_bytes_that_could_not_be_deleted_are_reported_not_counted():
    gc, store, _, _ = collector(failing=set())
    stuck = store.add(b"stuck", timedelta(days=2))
    freed = store.add(b"freed", timedelta(days=2))
    gc.deleter.failing = {str(stuck.digest)}  # type: ignore[attr-defined]
    result = gc.collect(timedelta(0))
    assert (result.objects, result.bytes_freed) == (1, freed.size)
    assert result.failed == [stuck]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1h", "1y", "1.5h", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_a_negative_grace_period_is_refused():
    gc, store, _, _ = collector()
    store.add(b"garbage", timedelta(days=2))
    with pytest.raises(InvalidInput):
        gc.collect(timedelta(seconds=-1))
    assert len(store.rows) == 1


# --- the claims' side (RegistryService): a push that lost its bytes to the collector records nothing ----------------
class CollectedWhileClaiming(InMemoryRegistryStore):
    """A store whose row is taken just after the collector unlinked the digest's file (in place)."""

    def __init__(self, blobs: InMemoryBlobStore) -> None:
        super().__init__()
        self.blob_store = blobs

    def add_blob(self, info: BlobInfo, now: datetime) -> BlobInfo:
        self.blob_store.blobs.pop(info.digest, None)
        self.blob_store.kept.clear()  # and the upload's verified copy is gone too: the bytes are nowhere
        return super().add_blob(info, now)

    def hold_blob(self, digest: Digest) -> BlobInfo | None:
        self.blob_store.blobs.pop(digest, None)
        return super().hold_blob(digest)


def test_a_push_whose_bytes_were_collected_meanwhile_is_refused_and_records_nothing():
    blobs = InMemoryBlobStore()
    store = CollectedWhileClaiming(blobs)
    service = RegistryService(store, blobs, FixedClock())
    data = b"a layer pushed again"
    with pytest.raises(UploadUnknown, match="garbage-collected"):
        service.push_blob(RepositoryName("alice/app"), Digest.of(data), [data])
    assert store.linked_blob(RepositoryName("alice/app"), Digest.of(data)) is None


def test_a_mount_of_a_blob_whose_bytes_were_collected_meanwhile_links_nothing():
    blobs = InMemoryBlobStore()
    data = b"a layer to mount"
    plain = InMemoryRegistryStore()
    RegistryService(plain, blobs, FixedClock()).push_blob(RepositoryName("alice/app"), Digest.of(data), [data])
    store = CollectedWhileClaiming(blobs)
    store.__dict__.update({k: v for k, v in plain.__dict__.items()})
    service = RegistryService(store, blobs, FixedClock())
    assert service.mount_blob(RepositoryName("bob/app"), RepositoryName("alice/app"), Digest.of(data)) is None
    assert store.linked_blob(RepositoryName("bob/app"), Digest.of(data)) is None


def test_a_failing_batch_leaves_the_given_result_with_what_was_done():
    gc, store, _, _ = collector(batch=1)
    first = store.add(b"garbage 1", timedelta(days=2))
    store.add(b"garbage 2", timedelta(days=2))
    original = store.delete_unreferenced
    calls: list[Sequence[str]] = []

    def second_fails(digests: Sequence[str], created_before: datetime) -> list[BlobInfo]:
        calls.append(digests)
        if len(calls) == 2:
            raise ConnectionError("the database went away")
        return original(digests, created_before)

    store.delete_unreferenced = second_fails  # type: ignore[method-assign]
    result = GcResult(dry_run=False)
    with pytest.raises(ConnectionError):
        gc.collect(timedelta(0), result=result)
    assert (result.objects, result.bytes_freed) == (1, first.size)


def test_a_grace_period_reaching_before_year_one_is_refused():
    gc, store, _, _ = collector()
    store.add(b"garbage", timedelta(days=2))
    with pytest.raises(InvalidInput):
        gc.collect(timedelta(days=999_999_999))
    with pytest.raises(InvalidInput):
        parse_duration("36501d")
    assert len(store.rows) == 1


# --- retention (domain/gc.py's Retention) over an in-memory store ---------------------------------------------------


class InMemoryRetentionStore:
    """Tags and manifests per repository, the tag history, the rules; a log of writes and commits. `moved` names
    tags a push changes between the read and the write."""

    def __init__(self, log: list[str]) -> None:
        from stevedore.domain.rules import ManifestState, TagRule, TagState

        self.rules: list[TagRule] = []
        self.tags: dict[str, list[TagState]] = {}
        self.manifests: dict[str, list[ManifestState]] = {}
        self.history: list[tuple[str, str, datetime]] = []  # (repository, digest, at)
        self.moved: set[str] = set()
        self.log = log

    def retention_rules(self):
        return list(self.rules)

    def repositories(self, namespace: str) -> list[str]:
        names = set(self.tags) | set(self.manifests)
        return sorted(n for n in names if n == namespace or n.startswith(namespace + "/"))

    def tag_states(self, repository: str):
        return list(self.tags.get(repository, []))

    def manifest_states(self, repository: str):
        return list(self.manifests.get(repository, []))

    def history_digests(self, repository: str, since: datetime | None) -> set[str]:
        return {d for r, d, at in self.history if r == repository and (since is None or at >= since)}

    def remove_tag(self, repository: str, state, now: datetime) -> bool:
        self.log.append(f"remove tag {state.tag}")
        if state.tag in self.moved:
            return False
        self.tags[repository].remove(state)
        self.history.append((repository, state.digest, now))
        return True

    def remove_manifest(self, repository, digest, *, pushed_before, history_since, links_before):
        self.log.append(f"remove manifest {digest}")
        if digest in self.moved:
            return None
        self.manifests[repository] = [m for m in self.manifests[repository] if m.digest != digest]
        return 2

    def prune_history(self, before: datetime) -> int:
        kept = [h for h in self.history if h[2] >= before]
        pruned = len(self.history) - len(kept)
        self.history = kept
        return pruned


def retention_of(store: InMemoryRetentionStore, log: list[str], batch: int = 100):
    from stevedore.domain.gc import Retention

    @contextlib.contextmanager
    def reads() -> Iterator[InMemoryRetentionStore]:
        yield store

    @contextlib.contextmanager
    def writes() -> Iterator[InMemoryRetentionStore]:
        yield store
        log.append("commit")

    return Retention(reads, writes, FixedClock(), batch=batch)


def retention_world() -> tuple[InMemoryRetentionStore, list[str]]:
    from stevedore.domain.rules import ManifestState, RuleKind, TagRule, TagState

    log: list[str] = []
    store = InMemoryRetentionStore(log)
    store.rules = [
        TagRule("team", None, RuleKind.RETENTION, "v*", keep_newest=1, untagged_days=7),
        TagRule("team", None, RuleKind.IMMUTABLE, "v1"),
        TagRule("other", None, RuleKind.IMMUTABLE, "*"),  # a namespace without retention: never read for it
    ]
    store.tags["team/app"] = [TagState(f"v{i}", f"sha256:{i}", NOW - timedelta(days=10 - i)) for i in range(1, 5)]
    store.tags["teammate/app"] = [TagState("v1", "sha256:x", NOW - timedelta(days=30))]  # another namespace
    store.manifests["team/app"] = [
        ManifestState("sha256:old", NOW - timedelta(days=30), False),
        ManifestState("sha256:young", NOW - timedelta(days=1), False),
        ManifestState("sha256:4", NOW - timedelta(days=30), True),
    ]
    store.history = [("team/app", "sha256:ancient", NOW - timedelta(days=400))]
    return store, log


def test_retention_dry_run_lists_and_writes_nothing():
    store, log = retention_world()
    result = retention_of(store, log).apply(tag_history_days=90, grace=timedelta(hours=1), dry_run=True)
    assert [(r, s.tag) for r, s in result.tags] == [("team/app", "v2"), ("team/app", "v3")]
    assert [(r, m.digest) for r, m in result.manifests] == [("team/app", "sha256:old")]
    assert log == [] and result.history_pruned == 0
    assert len(store.tags["team/app"]) == 4


def test_retention_removes_in_short_batches_counts_what_a_push_changed_and_prunes_old_history():
    store, log = retention_world()
    store.moved = {"v3"}
    result = retention_of(store, log, batch=1).apply(tag_history_days=90, grace=timedelta(hours=1))
    assert [s.tag for _, s in result.tags] == ["v2"]
    assert [m.digest for _, m in result.manifests] == ["sha256:old"]
    assert (result.skipped, result.links_removed, result.history_pruned) == (1, 2, 1)
    assert log == [
        "remove tag v2",
        "commit",
        "remove tag v3",
        "commit",
        "remove manifest sha256:old",
        "commit",
        "commit",  # the pruning
    ]
    assert [s.tag for s in store.tags["team/app"]] == ["v1", "v3", "v4"]
    assert [s.tag for s in store.tags["teammate/app"]] == ["v1"]
    assert result.repositories == ["team/app"] and result.removed_something


def test_retention_with_history_kept_for_ever_prunes_nothing_and_keeps_what_it_names():
    store, log = retention_world()
    store.history.append(("team/app", "sha256:old", NOW - timedelta(days=1000)))
    result = retention_of(store, log).apply(tag_history_days=0, grace=timedelta(hours=1))
    assert result.manifests == [] and result.history_pruned == 0
    assert len(store.history) == 2 + 2  # and the two tags it removed


# --- dangling links: a deleted image's layers -------------------------------------------------------------------------
class MemoryLinks:
    """Links per repository id with their time, and the digests its manifests reference."""

    def __init__(self) -> None:
        self.links: dict[int, dict[str, datetime]] = {}
        self.referenced: dict[int, set[str]] = {}
        self.held: set[str] = set()  # blobs a push holds: skipped

    def repository_ids_after(self, after: int, limit: int) -> list[int]:
        return sorted(i for i in self.links if i > after)[:limit]

    def dangling_links(self, repository_id: int, links_before: datetime, limit: int) -> list[str]:
        found = [
            d
            for d, at in sorted(self.links[repository_id].items())
            if at < links_before and d not in self.referenced.get(repository_id, set())
        ]
        return found[:limit]

    def unlink_dangling(self, repository_id: int, digests: list[str], links_before: datetime) -> int:
        gone = [
            d for d in digests if d not in self.held and self.links[repository_id].get(d, links_before) < links_before
        ]
        for d in gone:
            del self.links[repository_id][d]
        return len(gone)


def test_dangling_links_older_than_the_grace_period_are_unlinked():
    clock = FixedClock()
    store = MemoryLinks()
    old, young = clock.now() - timedelta(days=2), clock.now() - timedelta(hours=1)
    store.links = {1: {"a": old, "b": old, "c": young}, 2: {"a": old, "d": old}, 3: {f"x{n}": old for n in range(5)}}
    store.referenced = {1: {"b"}, 2: set()}
    store.held = {"d"}
    unit = contextlib.nullcontext(store)
    sweep = DanglingLinks(lambda: unit, lambda: unit, clock, batch=2)

    dry = sweep.apply(timedelta(hours=24), dry_run=True)
    assert dry.unlinked == 1 + 2 + 2 and store.links[1] == {"a": old, "b": old, "c": young}  # a floor, nothing done

    done = sweep.apply(timedelta(hours=24))
    assert store.links == {1: {"b": old, "c": young}, 2: {"d": old}, 3: {}}  # referenced, young and held stay
    assert done.unlinked == 1 + 1 + 5 and done.repositories == 3
    with pytest.raises(InvalidInput):
        sweep.apply(timedelta(seconds=-1))

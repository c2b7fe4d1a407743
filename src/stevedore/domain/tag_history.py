"""Domain layer: a tag's history — every move recorded as the lifecycle hears of it, read back newest first in
keyset pages, and which of its entries a caller may put the tag back on (Quay's "time machine")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from stevedore.domain.lifecycle import Event, TagChange
from stevedore.domain.model import Digest, RepositoryName

# What the pages call each cause (TagChange.cause; "retention" is written by the retention rules in gc).
CAUSE_LABELS = {"push": "pushed", "delete": "deleted", "restore": "restored", "retention": "retention"}
ENTRIES_PER_PAGE = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,17})~([0-9]{1,18})")


class TagHistoryStore(Protocol):
    def record(self, change: TagChange) -> None:
        """Keep one move of a tag, in the caller's unit of work (nothing when the repository is unknown)."""
        ...


class TagHistoryRecorder:
    """The tag history's part of the content lifecycle: it refuses nothing, and keeps every tag move it hears of.
    A change that moved nothing (the same digest pushed again) is not a move, so it is not kept."""

    def __init__(self, store: TagHistoryStore) -> None:
        self.store = store

    def before_push(self, name: RepositoryName) -> None:
        pass

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        pass

    def before_tag_change(self, change: TagChange) -> None:
        pass

    def changed(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, TagChange) and event.moved:
                self.store.record(event)


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded move: `old` None when the tag was created, `new` None when it was removed."""

    id: int
    at: datetime
    cause: str
    old: str | None
    new: str | None
    actor: str | None

    @property
    def cause_label(self) -> str:
        return CAUSE_LABELS.get(self.cause, self.cause)

    @property
    def target(self) -> str | None:
        """The digest this entry offers to put the tag back on: where it left the tag, or for a removal the digest
        it removed (undoing the deletion)."""
        return self.new if self.new is not None else self.old


@dataclass(frozen=True)
class CurrentTag:
    """Where a tag points now."""

    digest: str
    updated_at: datetime
    pushed_by: str | None


@dataclass(frozen=True)
class HistoryCursor:
    """Where a page of history ends: the time and id of its last (oldest) entry, so the next page seeks there
    through the index instead of counting past every newer entry. Text: `microseconds since 1970~id`."""

    at: datetime
    id: int

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryCursor:
        return cls(entry.at, entry.id)

    def text(self) -> str:
        moment = self.at.replace(tzinfo=UTC) if self.at.tzinfo is None else self.at
        return f"{(moment - _EPOCH) // timedelta(microseconds=1)}~{self.id}"

    @classmethod
    def parse(cls, text: str | None) -> HistoryCursor | None:
        """The cursor of `?before=`, or None for anything that is not one (the first page then)."""
        match = _CURSOR.fullmatch(text or "")
        if match is None:
            return None
        micros, entry_id = match.groups()
        return cls(_EPOCH + timedelta(microseconds=int(micros)), int(entry_id))


class TagHistoryQueries(Protocol):
    def current(self, repository_id: int, tag: str) -> CurrentTag | None:
        """Where the tag points now; None when there is no such tag."""
        ...

    def entries(self, repository_id: int, tag: str, *, before: HistoryCursor | None, limit: int) -> list[HistoryEntry]:
        """The tag's moves older than `before` (all: None), newest first (by time, then id), at most `limit`."""
        ...

    def has_history(self, repository_id: int, tag: str) -> bool: ...

    def held(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        """Those of `digests` that the repository still holds a manifest of."""
        ...


@dataclass(frozen=True)
class EntryView:
    """An entry as the page shows it: with whether its digests still have a manifest page, and whether it offers
    a restore (its target still held, not where the tag points now, and the caller may push)."""

    entry: HistoryEntry
    old_held: bool
    new_held: bool
    restorable: bool


@dataclass(frozen=True)
class HistoryPage:
    current: CurrentTag | None
    entries: list[EntryView]
    older: HistoryCursor | None  # the cursor of the next (older) page, None on the last


class TagUnknown(Exception):
    """Neither a tag of that name nor any history of one."""


def history_page(
    queries: TagHistoryQueries,
    repository_id: int,
    tag: str,
    *,
    before: HistoryCursor | None,
    may_restore: bool,
    per_page: int = ENTRIES_PER_PAGE,
) -> HistoryPage:
    """One page of a tag's history: where it points now, then its moves newest first. Raises TagUnknown when the
    tag neither exists nor has history (a deleted tag with history still has its page). Four queries at most."""
    current = queries.current(repository_id, tag)
    found = queries.entries(repository_id, tag, before=before, limit=per_page + 1)
    if current is None and not found and (before is None or not queries.has_history(repository_id, tag)):
        raise TagUnknown(tag)
    entries = found[:per_page]
    digests = {d for e in entries for d in (e.old, e.new) if d is not None}
    held = queries.held(repository_id, digests) if digests else set()
    now = current.digest if current is not None else None
    views = [
        EntryView(
            entry=e,
            old_held=e.old in held,
            new_held=e.new in held,
            restorable=may_restore and e.target is not None and e.target in held and e.target != now,
        )
        for e in entries
    ]
    older = HistoryCursor.of(entries[-1]) if len(found) > per_page else None
    return HistoryPage(current, views, older)


def restore_detail(new: str, old: str | None) -> str:
    """The audit event's detail for a restore: to which digest, and from which."""
    return f"to {new} from {old}" if old is not None else f"to {new} (the tag did not exist)"

"""The tag history's domain: what the lifecycle part keeps, the page's cursor, and which entries offer a restore —
over an in-memory history (no database)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from stevedore.domain.lifecycle import EventAction, ManifestEvent, TagChange
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.tag_history import (
    CurrentTag,
    HistoryCursor,
    HistoryEntry,
    TagHistoryRecorder,
    TagUnknown,
    history_page,
    restore_detail,
)

NAME = RepositoryName("alice/app")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
A, B, C = (Digest.of(x) for x in (b"a", b"b", b"c"))


class InMemoryTagHistory:
    """The store and the read model over lists: entries ordered as the SQL adapter orders them."""

    def __init__(self) -> None:
        self.recorded: list[TagChange] = []
        self.tags: dict[str, CurrentTag] = {}
        self.manifests: set[str] = set()
        self.queries = 0

    def record(self, change: TagChange) -> None:
        self.recorded.append(change)

    def current(self, repository_id: int, tag: str) -> CurrentTag | None:
        self.queries += 1
        return self.tags.get(tag)

    def entries(self, repository_id: int, tag: str, *, before: HistoryCursor | None, limit: int) -> list[HistoryEntry]:
        self.queries += 1
        rows = [
            HistoryEntry(i + 1, c.at, c.cause, str(c.old) if c.old else None, str(c.new) if c.new else None, c.actor)
            for i, c in enumerate(self.recorded)
            if c.tag == tag
        ]
        rows.sort(key=lambda e: (e.at, e.id), reverse=True)
        if before is not None:
            rows = [e for e in rows if (e.at, e.id) < (before.at, before.id)]
        return rows[:limit]

    def has_history(self, repository_id: int, tag: str) -> bool:
        self.queries += 1
        return any(c.tag == tag for c in self.recorded)

    def held(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        self.queries += 1
        return set(digests) & self.manifests


def change(old: Digest | None, new: Digest | None, minutes: int, cause: str = "push", tag: str = "v1") -> TagChange:
    return TagChange(NAME, tag, old, new, "alice", T0 + timedelta(minutes=minutes), cause)


def test_the_recorder_keeps_every_move_and_nothing_else():
    history = InMemoryTagHistory()
    recorder = TagHistoryRecorder(history)
    pushed = ManifestEvent(EventAction.PUSH, NAME, A, "x", 1, "v1", "alice", T0)
    moves = [change(None, A, 0), change(A, B, 1), change(B, None, 2, "delete"), change(None, A, 3, "restore")]
    recorder.changed([pushed, moves[0]])
    recorder.changed([change(A, A, 1)])  # the same digest pushed again: not a move
    recorder.changed(moves[1:])
    assert history.recorded == moves
    # It refuses nothing.
    recorder.before_push(NAME)
    recorder.before_blob(NAME, A, 1)
    recorder.before_tag_change(moves[1])


def test_a_cursor_round_trips_and_junk_is_the_first_page():
    cursor = HistoryCursor(T0 + timedelta(microseconds=7), 42)
    assert HistoryCursor.parse(cursor.text()) == cursor
    naive = HistoryCursor(datetime(2024, 5, 1, 12, 0), 1)
    assert HistoryCursor.parse(naive.text()) == HistoryCursor(T0, 1)
    for junk in (None, "", "x", "12~", "~3", "1~2~3", "-1~2", "1.5~2", "1" * 18 + "~1", "1~" + "9" * 19, "\u0661~1"):
        assert HistoryCursor.parse(junk) is None, junk


def test_the_page_shows_where_the_tag_points_and_offers_only_held_other_digests():
    history = InMemoryTagHistory()
    history.recorded = [change(None, A, 0), change(A, B, 1), change(B, C, 2)]
    history.tags["v1"] = CurrentTag(str(C), T0, "alice")
    history.manifests = {str(A), str(C)}  # B's manifest is gone
    page = history_page(history, 1, "v1", before=None, may_restore=True)
    assert page.current == history.tags["v1"]
    assert [(v.entry.old, v.entry.new) for v in page.entries] == [(str(B), str(C)), (str(A), str(B)), (None, str(A))]
    assert [v.restorable for v in page.entries] == [False, False, True]  # C is current, B is gone, A is held
    assert [(v.old_held, v.new_held) for v in page.entries] == [(False, True), (True, False), (False, True)]
    assert page.older is None
    assert history.queries == 2 + 1  # current, entries, held: has_history is only asked of a tag with no page


def test_without_the_push_right_nothing_is_restorable():
    history = InMemoryTagHistory()
    history.recorded = [change(None, A, 0), change(A, B, 1)]
    history.tags["v1"] = CurrentTag(str(B), T0, "alice")
    history.manifests = {str(A), str(B)}
    page = history_page(history, 1, "v1", before=None, may_restore=False)
    assert [v.restorable for v in page.entries] == [False, False]


def test_a_deleted_tag_keeps_its_page_and_its_deletion_offers_what_it_removed():
    history = InMemoryTagHistory()
    history.recorded = [change(None, A, 0), change(A, None, 1, "delete")]
    history.manifests = {str(A)}
    page = history_page(history, 1, "v1", before=None, may_restore=True)
    assert page.current is None
    deletion, push = page.entries
    assert deletion.entry.cause_label == "deleted" and deletion.entry.target == str(A) and deletion.restorable
    assert push.entry.cause_label == "pushed" and push.restorable


def test_a_tag_with_neither_a_pointer_nor_history_is_unknown():
    history = InMemoryTagHistory()
    history.recorded = [change(None, A, 0, tag="other")]
    with pytest.raises(TagUnknown):
        history_page(history, 1, "v1", before=None, may_restore=True)
    # A page past the end of a real history is an empty page, not unknown.
    history.recorded.append(change(None, A, 1))
    page = history_page(history, 1, "v1", before=HistoryCursor(T0, 0), may_restore=True)
    assert page.entries == [] and page.older is None
    with pytest.raises(TagUnknown):
        history_page(history, 1, "nope", before=HistoryCursor(T0, 0), may_restore=True)


def test_pages_go_newest_first_over_every_entry_once_ties_by_id():
    history = InMemoryTagHistory()
    digests = [Digest.of(str(i).encode()) for i in range(7)]
    # Pairs of moves at the same instant: the id orders them.
    history.recorded = [change(digests[i - 1] if i else None, digests[i], i // 2) for i in range(7)]
    history.manifests = {str(d) for d in digests}
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        page = history_page(history, 1, "v1", before=before, may_restore=True, per_page=3)
        seen += [v.entry.id for v in page.entries]
        pages += 1
        if page.older is None:
            break
        before = HistoryCursor.parse(page.older.text())
    assert seen == [7, 6, 5, 4, 3, 2, 1] and pages == 3


def test_a_restore_detail_says_to_which_digest_and_from_which():
    assert restore_detail(str(A), str(B)) == f"to {A} from {B}"
    assert restore_detail(str(A), None) == f"to {A} (the tag did not exist)"


def test_a_last_page_that_is_exactly_full_offers_no_older_page():
    history = InMemoryTagHistory()
    history.recorded = [change(None, Digest.of(str(i).encode()), i) for i in range(6)]
    first = history_page(history, 1, "v1", before=None, may_restore=True, per_page=3)
    assert first.older is not None
    second = history_page(history, 1, "v1", before=first.older, may_restore=True, per_page=3)
    assert len(second.entries) == 3 and second.older is None

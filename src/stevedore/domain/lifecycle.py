"""Domain layer: what the content lifecycle hears of a push or a deletion, and where it may refuse one.

The registry's use cases (registry.py) call a `Lifecycle` at fixed points, inside the request's unit of work:

- `before_push(name)` before anything is written into a repository (quotas: a new repository counts);
- `before_blob(name, digest, size)` before a verified blob is recorded and linked (quotas: the bytes it adds);
- `before_tag_change(change)` once the store has moved or removed a tag and knows where it pointed before
  (immutable tags); raising rolls the whole push or deletion back;
- `changed(events)` after the store wrote them, in the same transaction (tag history, webhooks' outbox).

Each part of the lifecycle is one `Lifecycle`; `Lifecycles` calls them all in order. The default does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from stevedore.domain.model import Digest, RepositoryName


class EventAction(StrEnum):
    PUSH = "push"  # a manifest was pushed (tagged or not)
    DELETE = "delete"  # a manifest, or a tag, was deleted
    PULL = "pull"


@dataclass(frozen=True)
class TagChange:
    """A tag created, moved, put back or removed. `old` None: the tag is new; `new` None: it was deleted."""

    repository: RepositoryName
    tag: str
    old: Digest | None
    new: Digest | None
    actor: str | None
    at: datetime
    # Why: "push" (a manifest PUT), "delete" (a tag or its manifest deleted), "restore" (put back from history).
    cause: str = "push"

    @property
    def moved(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class ManifestEvent:
    """What a webhook tells: a manifest pushed or deleted (with the tag, if a tag was named), or pulled."""

    action: EventAction
    repository: RepositoryName
    digest: Digest
    media_type: str | None
    size: int | None
    tag: str | None
    actor: str | None
    at: datetime


Event = TagChange | ManifestEvent


class Lifecycle(Protocol):
    def before_push(self, name: RepositoryName) -> None:
        """Before a push writes into `name` (which may not exist yet). Raises Denied to refuse it."""
        ...

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        """Before a verified blob of `size` bytes is recorded and linked into `name`. Raises Denied to refuse it
        (its bytes are then not kept)."""
        ...

    def before_tag_change(self, change: TagChange) -> None:
        """A tag of the repository has just been changed in this unit of work. Raises (Denied, TagInvalid) to refuse
        it: the caller's transaction is rolled back."""
        ...

    def changed(self, events: Sequence[Event]) -> None:
        """What a use case did, recorded in its unit of work."""
        ...


class NoLifecycle:
    def before_push(self, name: RepositoryName) -> None:
        pass

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        pass

    def before_tag_change(self, change: TagChange) -> None:
        pass

    def changed(self, events: Sequence[Event]) -> None:
        pass


class Lifecycles:
    """Several lifecycles, asked in order: the first to refuse wins, every one hears every change."""

    def __init__(self, parts: Sequence[Lifecycle]) -> None:
        self.parts = list(parts)

    def before_push(self, name: RepositoryName) -> None:
        for part in self.parts:
            part.before_push(name)

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        for part in self.parts:
            part.before_blob(name, digest, size)

    def before_tag_change(self, change: TagChange) -> None:
        for part in self.parts:
            part.before_tag_change(change)

    def changed(self, events: Sequence[Event]) -> None:
        if not events:
            return
        for part in self.parts:
            part.changed(events)

"""Domain layer: deleting a whole repository (its tags, manifests and blob links) from the pages, for those with
the delete right. Bytes stay for garbage collection: other repositories may hold the same blobs.

The lifecycle hears it as the /v2/ deletions it amounts to (the namespace's webhooks): one `delete` event per
manifest the repository held, and one per tag that pointed at one, built from what the store's statements removed in
the same unit of work, so a push that raced the deletion is neither missed nor announced. The repository's tag
history goes with its rows, so no TagChange is told."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from stevedore.domain.access import Access, Action
from stevedore.domain.errors import Denied, NameUnknown
from stevedore.domain.lifecycle import EventAction, Lifecycle, ManifestEvent, NoLifecycle
from stevedore.domain.model import Account, Digest, RepositoryName
from stevedore.domain.ports import Clock


@dataclass(frozen=True)
class RemovedManifest:
    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class RemovedTag:
    name: str
    digest: Digest  # of the manifest it pointed at


@dataclass(frozen=True)
class RemovedRepository:
    """What deleting a repository removed, as the deleting statements themselves returned it."""

    manifests: Sequence[RemovedManifest]
    tags: Sequence[RemovedTag]


class RepositoryDeletionStore(Protocol):
    def delete_repository(self, name: RepositoryName) -> RemovedRepository | None:
        """Remove the repository's row with its tags, manifests, manifest references, blob links and upload rows:
        the manifests and tags removed, or None when there is no such repository. Never touches blob bytes."""
        ...


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RepositoryDeletion:
    def __init__(
        self,
        store: RepositoryDeletionStore,
        access: Access,
        guard: Callable[[RepositoryName], None] | None = None,
        *,
        lifecycle: Lifecycle | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.access = access
        # Raises Denied while the repository holds an immutable tag (domain/rules.py): deleting the repository would
        # take the tag away. Asked once the caller may delete.
        self.guard = guard or (lambda name: None)
        # Told what went (webhooks), in the caller's unit of work.
        self.lifecycle: Lifecycle = lifecycle or NoLifecycle()
        self.clock: Clock = clock or _SystemClock()

    def delete(self, account: Account | None, name: RepositoryName, actor: str | None = None) -> None:
        """Raises NameUnknown for a repository the account may not even pull (no oracle), Denied when it may pull
        but not delete. `actor`: who asked (an account's name), for the events."""
        if not self.access.may(account, Action.PULL, name):
            raise NameUnknown(detail={"name": name.value})
        if not self.access.may(account, Action.DELETE, name):
            raise Denied(f"delete of {name} denied")
        self.guard(name)
        removed = self.store.delete_repository(name)
        if removed is None:
            raise NameUnknown(detail={"name": name.value})
        events = deletion_events(name, removed, actor, self.clock.now())
        if events:
            self.lifecycle.changed(events)


def deletion_events(
    name: RepositoryName, removed: RemovedRepository, actor: str | None, at: datetime
) -> list[ManifestEvent]:
    """Per manifest, in digest order: a `delete` event for each tag that pointed at it (as a tag deleted over /v2/),
    then one for the manifest itself (`tag` None, as a deletion by digest)."""
    tags_of: dict[Digest, list[str]] = defaultdict(list)
    for tag in removed.tags:
        tags_of[tag.digest].append(tag.name)
    events = []
    for manifest in sorted(removed.manifests, key=lambda m: str(m.digest)):
        for tag_name in sorted(tags_of.pop(manifest.digest, ())):
            events.append(_deleted(name, manifest.digest, manifest, tag_name, actor, at))
        events.append(_deleted(name, manifest.digest, manifest, None, actor, at))
    # A tag whose manifest the store did not report (it cannot happen: a tag's manifest is the repository's) is still
    # announced, without what only the manifest knew.
    for digest, tag_names in sorted(tags_of.items(), key=lambda item: str(item[0])):
        events += [_deleted(name, digest, None, tag_name, actor, at) for tag_name in sorted(tag_names)]
    return events


def _deleted(
    name: RepositoryName,
    digest: Digest,
    manifest: RemovedManifest | None,
    tag: str | None,
    actor: str | None,
    at: datetime,
) -> ManifestEvent:
    media_type = manifest.media_type if manifest else None
    size = manifest.size if manifest else None
    return ManifestEvent(EventAction.DELETE, name, digest, media_type, size, tag, actor, at)

"""Domain layer: deleting a whole repository (its tags, manifests and blob links) from the pages, for those with
the delete right. Bytes stay for garbage collection: other repositories may hold the same blobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stevedore.domain.access import Access, Action
from stevedore.domain.errors import Denied, NameUnknown
from stevedore.domain.model import Account, RepositoryName


class RepositoryDeletionStore(Protocol):
    def delete_repository(self, name: RepositoryName) -> bool:
        """Remove the repository's row with its tags, manifests, manifest references, blob links and upload rows.
        False when there is no such repository. Never touches blob bytes."""
        ...


class RepositoryDeletion:
    def __init__(
        self,
        store: RepositoryDeletionStore,
        access: Access,
        guard: Callable[[RepositoryName], None] | None = None,
    ) -> None:
        self.store = store
        self.access = access
        # Raises Denied while the repository holds an immutable tag (domain/rules.py): deleting the repository would
        # take the tag away. Asked once the caller may delete.
        self.guard = guard or (lambda name: None)

    def delete(self, account: Account | None, name: RepositoryName) -> None:
        """Raises NameUnknown for a repository the account may not even pull (no oracle), Denied when it may pull
        but not delete."""
        if not self.access.may(account, Action.PULL, name):
            raise NameUnknown(detail={"name": name.value})
        if not self.access.may(account, Action.DELETE, name):
            raise Denied(f"delete of {name} denied")
        self.guard(name)
        if not self.store.delete_repository(name):
            raise NameUnknown(detail={"name": name.value})

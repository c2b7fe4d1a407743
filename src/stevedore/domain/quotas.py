"""Domain layer: storage accounting and quotas per namespace, and their part of the content lifecycle
(domain/lifecycle.py): a push that would take a namespace beyond its quota is refused with Denied, before its bytes
are kept.

What a namespace holds (`Usage`): the distinct blobs linked into any of its repositories, each counted once however
many of them link it (a base layer shared by two repositories costs once), plus its manifests (stored per
repository, so counted per repository), and how many repositories it has. A repository's own figure is the same over
that repository alone. Blobs linked in another namespace too count in both: each namespace holds them.

Enforcement, and what it costs:

- No quota (no row), the usual case: one primary-key look-up a request that pushes, nothing more.
- `before_push` reads committed state outside the push's transaction (the push has not written anything yet, and
  may be about to stream a large body: no lock may be held meanwhile). It refuses a new repository beyond
  `max_repositories`, and, with a byte quota, a blob push that starts while the namespace is at or over it (POST:
  before any byte is sent) unless the request names a blob the namespace already holds, and a manifest while the
  namespace is over it.
- `before_blob` decides exactly, in the push's transaction once the bytes are verified: the quota's row is locked
  (PostgreSQL: FOR UPDATE; SQLite's writers are serialized already) before the namespace is summed, so two pushes
  into one namespace with a byte quota cannot both take its last free bytes. A blob the namespace holds already costs
  nothing (a re-push, a mount between its repositories); one mounted from another namespace costs its size.

What may still overshoot (the README says so too): manifests are refused only once the namespace is over its quota,
so one manifest push (at most the largest manifest accepted) can take it past; the repositories quota is checked
against committed state, so concurrent first pushes into several new repositories can each pass; a quota lowered
below what a namespace holds refuses new bytes but removes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Protocol

from stevedore.domain.access import may_administer
from stevedore.domain.errors import Denied, InvalidInput
from stevedore.domain.lifecycle import Event, TagChange
from stevedore.domain.model import Account, Digest, RepositoryName
from stevedore.domain.namespaces import namespace_of
from stevedore.domain.ports import Clock

# What a BIGINT column holds; far beyond any real quota (8 EiB).
MAX_QUOTA_BYTES = 2**63 - 1
MAX_QUOTA_REPOSITORIES = 2**31 - 1
MAX_QUOTA_TEXT = 40

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """`10 GiB`, `500 MB`, `1.5 TiB` or a plain number of bytes: the number of bytes (a fraction of a byte is
    dropped). Units ignore case; KB, MB, GB, TB, PB are powers of 1000, KiB, MiB, GiB, TiB, PiB of 1024."""
    found = _SIZE.match(text) if len(text) <= MAX_QUOTA_TEXT else None
    if found is None or found.group(2).lower() not in _UNITS:
        raise InvalidInput(
            f"{_shown(text)} is not a size: write a number of bytes, or a number with a unit such as 500 MB or 10 GiB"
        )
    try:
        amount = Decimal(found.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimal numbers
        raise InvalidInput(f"{_shown(text)} is not a size") from None
    size = int(amount * _UNITS[found.group(2).lower()])
    if size > MAX_QUOTA_BYTES:
        raise InvalidInput(f"{_shown(text)} is larger than any quota this registry can hold (8 EiB)")
    return size


def parse_count(text: str) -> int:
    """A number of repositories: a whole number, 0 or more."""
    value = text.strip()
    if len(value) > MAX_QUOTA_TEXT or not value.isdigit() or not value.isascii():
        raise InvalidInput(f"{_shown(text)} is not a number of repositories: write a whole number such as 20")
    count = int(value)
    if count > MAX_QUOTA_REPOSITORIES:
        raise InvalidInput(f"{_shown(text)} is more repositories than a quota can hold")
    return count


def _shown(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= MAX_QUOTA_TEXT else text[:MAX_QUOTA_TEXT] + "…")


def human_bytes(size: int) -> str:
    """1536 -> `1.5 KiB`, 10 GiB -> `10 GiB`: powers of 1024, one decimal where it says something."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            shown = f"{value:.1f}"
            return f"{shown.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Quota:
    """A namespace's limits; None: no limit of that kind."""

    namespace: str
    max_bytes: int | None
    max_repositories: int | None
    updated_at: datetime | None = None
    updated_by: str | None = None

    def describe(self) -> str:
        size = "no limit" if self.max_bytes is None else human_bytes(self.max_bytes)
        count = "no limit" if self.max_repositories is None else str(self.max_repositories)
        return f"storage {size}, repositories {count}"


@dataclass(frozen=True)
class Usage:
    """What a namespace (or one repository) holds: deduplicated blob bytes, manifest bytes, repositories."""

    blob_bytes: int = 0
    manifest_bytes: int = 0
    repositories: int = 0

    @property
    def bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes


class QuotaStore(Protocol):
    """Quotas and the usage they are measured against, over indexed queries (adapters/sql/quotas.py)."""

    def quota(self, namespace: str) -> Quota | None:
        """The namespace's quota; None when it has none (no row)."""
        ...

    def lock_quota(self, namespace: str) -> Quota | None:
        """The quota read again and locked until the transaction ends (PostgreSQL: FOR UPDATE), so that pushes into
        one namespace sum its usage one at a time; None when it has none (nothing is locked)."""
        ...

    def put_quota(self, quota: Quota) -> None:
        """Insert or replace the namespace's quota."""
        ...

    def delete_quota(self, namespace: str) -> None: ...

    def repository_exists(self, name: RepositoryName) -> bool: ...

    def repository_count(self, namespace: str) -> int: ...

    def holds_blob(self, namespace: str, digest: Digest) -> bool:
        """Whether any repository of the namespace links the blob (it is counted in its usage already)."""
        ...

    def usage(self, namespace: str) -> Usage:
        """The namespace's deduplicated usage and its number of repositories."""
        ...

    def repository_usage(self, name: RepositoryName) -> Usage | None:
        """One repository's deduplicated usage (`repositories` 1); None when there is no such repository."""
        ...


# --- who may do what -------------------------------------------------------------------------------------------------


class Viewer(Protocol):
    """What deciding who sees a namespace's usage needs of domain.access.Access."""

    def right_of(self, account: Account, namespace: str) -> object | None: ...


def may_set_quota(account: Account | None) -> bool:
    """Quotas are the installation's: only its administrators set them. A namespace's own admins must not raise
    theirs."""
    return may_administer(account)


def may_see_usage(access: Viewer, account: Account | None, namespace: str) -> bool:
    """Its members (any right; the owner of a personal namespace is one) and administrators see a namespace's usage
    and quota."""
    if account is None or not account.is_active:
        return False
    return may_administer(account) or access.right_of(account, namespace) is not None


# --- setting a quota -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaChange:
    namespace: str
    old: Quota | None
    new: Quota | None

    @property
    def changed(self) -> bool:
        return _limits(self.old) != _limits(self.new)

    def describe(self) -> str:
        """For the audit log: `storage 10 GiB, repositories no limit (was storage no limit, repositories 5)`."""
        new = self.new.describe() if self.new else "no quota"
        old = self.old.describe() if self.old else "no quota"
        return f"{new} (was {old})"


def _limits(quota: Quota | None) -> tuple[int | None, int | None]:
    return (None, None) if quota is None else (quota.max_bytes, quota.max_repositories)


class QuotaAdministration:
    """Setting a namespace's quota from the page, in the caller's unit of work."""

    def __init__(self, store: QuotaStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def set_quota(
        self, actor: Account | None, namespace: str, max_bytes_text: str, max_repositories_text: str
    ) -> QuotaChange:
        """Parse and store the quota (empty text: no limit of that kind; both empty: no quota at all). Raises Denied
        for anyone but an administrator, InvalidInput for a value that does not parse; stores nothing then."""
        if not may_set_quota(actor):
            raise Denied(f"only administrators set the quota of {namespace}")
        max_bytes = parse_size(max_bytes_text) if max_bytes_text.strip() else None
        max_repositories = parse_count(max_repositories_text) if max_repositories_text.strip() else None
        old = self.store.lock_quota(namespace)
        if max_bytes is None and max_repositories is None:
            if old is not None:
                self.store.delete_quota(namespace)
            return QuotaChange(namespace, old, None)
        assert actor is not None
        new = Quota(namespace, max_bytes, max_repositories, self.clock.now(), actor.username)
        if _limits(old) != _limits(new):
            self.store.put_quota(new)
        return QuotaChange(namespace, old, new)


# --- enforcement -----------------------------------------------------------------------------------------------------


class PushKind(StrEnum):
    BLOB = "blob"  # an upload started or finished, a whole blob, a mount: may add bytes
    MANIFEST = "manifest"
    # A session's closing PUT: its blob is measured exactly (before_blob, under the quota's lock) once its bytes are
    # verified, so the early, unlocked sum of the whole namespace would only be paid twice.
    FINISH = "finish"
    OTHER = "other"  # a tag put back from its history: adds nothing


@dataclass(frozen=True)
class PushRequest:
    """What the request that pushes is known to carry before its bytes are read: its kind, and the blob it names,
    if any (`?digest=` of a whole blob or a finish, `?mount=`)."""

    kind: PushKind
    digest: Digest | None = None


class QuotaEnforcer:
    """The quotas' part of a request's lifecycle. `lookups` reads committed state outside the request's transaction;
    `unit()` is the store in the push's transaction, made only when a blob is measured against a byte quota."""

    def __init__(self, lookups: QuotaStore, unit: Callable[[], QuotaStore], push: PushRequest) -> None:
        self.lookups = lookups
        self.unit = unit
        self.push = push
        self._quotas: dict[str, Quota | None] = {}

    def _quota(self, namespace: str) -> Quota | None:
        """The namespace's quota, read once a request (the one query a push into a namespace without one costs)."""
        if namespace not in self._quotas:
            self._quotas[namespace] = self.lookups.quota(namespace)
        return self._quotas[namespace]

    def before_push(self, name: RepositoryName) -> None:
        namespace = namespace_of(name)
        quota = self._quota(namespace)
        if quota is None:
            return
        if quota.max_repositories is not None and not self.lookups.repository_exists(name):
            count = self.lookups.repository_count(namespace)
            if count >= quota.max_repositories:
                raise Denied(
                    f"namespace {namespace} is at its repositories quota: it has {count} of "
                    f"{quota.max_repositories}, so {name} cannot be created",
                    detail={
                        "namespace": namespace,
                        "quota": "repositories",
                        "used": count,
                        "limit": quota.max_repositories,
                    },
                )
        if quota.max_bytes is None or self.push.kind in (PushKind.OTHER, PushKind.FINISH):
            return
        named = self.push.digest if self.push.kind is PushKind.BLOB else None
        if named is not None and self.lookups.holds_blob(namespace, named):
            return  # a blob the namespace holds costs nothing: always allowed
        used = self.lookups.usage(namespace).bytes
        full = used >= quota.max_bytes if self.push.kind is PushKind.BLOB else used > quota.max_bytes
        if full:
            where = "over" if used > quota.max_bytes else "at"
            raise Denied(
                f"namespace {namespace} is {where} its storage quota: {human_bytes(used)} used of "
                f"{human_bytes(quota.max_bytes)}",
                detail={"namespace": namespace, "quota": "bytes", "used": used, "limit": quota.max_bytes},
            )

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        namespace = namespace_of(name)
        known = self._quota(namespace)  # read by before_push already: no query
        if known is None or known.max_bytes is None:
            return
        unit = self.unit()
        quota = unit.lock_quota(namespace)  # from here on, other pushes into the namespace wait for this one
        if quota is None or quota.max_bytes is None:
            return
        if unit.holds_blob(namespace, digest):
            return
        used = unit.usage(namespace).bytes
        if used + size > quota.max_bytes:
            raise Denied(
                f"namespace {namespace} is over its storage quota: {human_bytes(used)} used of "
                f"{human_bytes(quota.max_bytes)}, and this blob needs {human_bytes(size)}",
                detail={
                    "namespace": namespace,
                    "quota": "bytes",
                    "used": used,
                    "limit": quota.max_bytes,
                    "needed": size,
                },
            )

    def before_tag_change(self, change: TagChange) -> None:
        pass

    def changed(self, events: Sequence[Event]) -> None:
        pass

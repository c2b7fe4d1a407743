"""Domain layer: namespaces — the first path component of a repository name — their members and rights, and the
administration use cases behind `stevedore namespace …` (and, later, the pages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from stevedore.domain.errors import AccountUnknown, Denied, InvalidInput, NameInvalid, NotFound
from stevedore.domain.model import RepositoryName
from stevedore.domain.ports import AccountStore, Clock, NamespaceStore

# One component of the distribution-spec name grammar (model.py's _NAME_COMPONENT).
_NAMESPACE_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_NAMESPACE_LENGTH = 255

# Never claimed by a push and never owned by an account of the same name; administrators may still create them
# (`stevedore namespace create library`) and give rights on them. `library` is what docker puts before a bare name
# on Docker Hub; the others are paths of the web index.
RESERVED_NAMESPACES = frozenset(
    {
        "library",
        "v2",
        "admin",
        "administrator",
        "root",
        "setup",
        "static",
        "api",
        "login",
        "logout",
        "users",
        "user",
        "invites",
        "namespaces",
        "repositories",
        "tokens",
        "robots",
        "audit",
        "settings",
        "health",
        "stevedore",
    }
)


class Right(StrEnum):
    """A member's right on a namespace; each includes the ones before it. push also deletes; admin also manages
    members."""

    PULL = "pull"
    PUSH = "push"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def includes(self, other: Right) -> bool:
        return self.rank >= other.rank


_RANKS = {Right.PULL: 1, Right.PUSH: 2, Right.ADMIN: 3}


class AccessModel(StrEnum):
    """`stevedore.access_model`. default: everyone pulls, push and delete need a right; open: everyone pulls and
    pushes everywhere (the original Stevedore); private: pull needs a right too. Administrators may do anything."""

    DEFAULT = "default"
    OPEN = "open"
    PRIVATE = "private"


@dataclass(frozen=True)
class Namespace:
    name: str
    created_at: datetime
    created_by: int | None = None  # the claimer or the administrator's owner; None from the command line


@dataclass(frozen=True)
class Member:
    namespace: str
    account_id: int
    username: str
    right: Right


def namespace_of(repository: RepositoryName) -> str:
    """`team/app` -> `team`; a bare `app` is its own namespace."""
    return repository.value.partition("/")[0]


def is_reserved(namespace: str) -> bool:
    return namespace in RESERVED_NAMESPACES


def validate_namespace(text: str) -> str:
    name = (text or "").strip()
    if len(name) > MAX_NAMESPACE_LENGTH or not _NAMESPACE_RE.fullmatch(name):
        raise NameInvalid(
            f"invalid namespace {text!r}: one component of a repository name (lowercase letters and digits, "
            "separated by '.', '_', '__' or dashes)",
            detail={"name": text},
        )
    return name


def parse_right(text: str) -> Right:
    try:
        return Right(text)
    except ValueError:
        raise InvalidInput(f"unknown right {text!r}: pull, push or admin") from None


class NamespaceExists(InvalidInput):
    pass


class NamespaceUnknown(NotFound):
    pass


class NamespaceService:
    """Administrators' use cases: create namespaces, give and take rights. Who may call them is the caller's."""

    def __init__(self, namespaces: NamespaceStore, accounts: AccountStore, clock: Clock) -> None:
        self.namespaces = namespaces
        self.accounts = accounts
        self.clock = clock

    def create(self, name: str, owner: str | None = None) -> Namespace:
        """A new namespace, reserved names included; with `owner`, that account becomes its admin."""
        name = validate_namespace(name)
        if self.accounts.by_username(name) is not None:
            raise NamespaceExists(f"{name} is the namespace of the user {name}: it exists already")
        owner_account = self._account(owner) if owner else None
        namespace = Namespace(name, self.clock.now(), owner_account.id if owner_account else None)
        if not self.namespaces.add(namespace):
            raise NamespaceExists(f"the namespace {name} exists already")
        if owner_account is not None and owner_account.id is not None:
            self.namespaces.set_member(name, owner_account.id, Right.ADMIN)
        return namespace

    def list(self) -> list[tuple[Namespace, list[Member]]]:
        return [(namespace, self.namespaces.members(namespace.name)) for namespace in self.namespaces.all()]

    def add_member(self, namespace: str, username: str, right: Right) -> None:
        """Give `username` `right` on `namespace` (replacing the right it had). A user's own namespace gets its row
        the first time someone else is added to it."""
        name = self._existing(namespace)
        account = self._account(username)
        assert account.id is not None
        self.namespaces.set_member(name, account.id, right)

    def remove_member(self, namespace: str, username: str) -> None:
        name = self._existing(namespace)
        account = self._account(username)
        assert account.id is not None
        if account.username == name:
            raise Denied(f"{username} owns the namespace of its user name: that cannot be taken away")
        if not self.namespaces.remove_member(name, account.id):
            raise NotFound(f"{username} is no member of {name}")

    def _existing(self, namespace: str) -> str:
        name = validate_namespace(namespace)
        if self.namespaces.get(name) is not None:
            return name
        owner = self.accounts.by_username(name)
        if owner is not None and not is_reserved(name):
            self.namespaces.add(Namespace(name, self.clock.now(), owner.id))
            return name
        raise NamespaceUnknown(f"no namespace {name}: create it with `stevedore namespace create {name}`")

    def _account(self, username: str) -> AccountSummary:
        account = self.accounts.by_username(username)
        if account is None:
            raise AccountUnknown(f"no user {username}")
        return AccountSummary(account.id, account.username)


@dataclass(frozen=True)
class AccountSummary:
    id: int | None
    username: str

"""Domain layer: namespaces — the first path component of a repository name — their members and rights, and the
administration use cases behind `stevedore namespace …` (and, later, the pages)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from stevedore.domain.errors import AccountUnknown, Denied, InvalidInput, NameInvalid, NotFound
from stevedore.domain.model import MAX_USERNAME_LENGTH, Account, RepositoryName, robot_namespace
from stevedore.domain.ports import AccountStore, Clock, NamespaceStore

if TYPE_CHECKING:
    from stevedore.domain.access import Access  # access.py imports this module: the functions import it late

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
        owner_account = self.account(owner) if owner else None
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
        account = self.account(username)
        assert account.id is not None
        self.namespaces.set_member(name, account.id, right)

    def remove_member(self, namespace: str, username: str) -> None:
        name = self._existing(namespace)
        account = self.account(username)
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

    def account(self, username: str) -> AccountSummary:
        """The account of that user name; AccountUnknown if none (and, unlooked-up, for a shape no account has)."""
        storable = 0 < len(username) <= MAX_USERNAME_LENGTH and "\x00" not in username  # PostgreSQL holds no NUL
        account = self.accounts.by_username(username) if storable else None
        if account is None:
            raise AccountUnknown(f"no user {username}")
        if robot_namespace(account.username) is not None:
            # Its rights come from its name alone (domain/access.py): a row would change nothing but mislead, and an
            # admin row would count as a namespace's last admin.
            raise InvalidInput(f"{account.username} is a robot: it acts in its own namespace only, as no member")
        return AccountSummary(account.id, account.username)


@dataclass(frozen=True)
class AccountSummary:
    id: int | None
    username: str


# --- the pages' rules: who sees a namespace, who manages its members -------------------------------------------------


def may_see_namespace(access: Access, account: Account | None, namespace: str) -> bool:
    """May `account` see `namespace` (in the list, its page, its members)? Exactly when it may pull from it: every
    active account under the default and open models, under `private` only its own namespace and those it is a
    member of; administrators see every one."""
    from stevedore.domain.access import Action

    try:
        repository = RepositoryName.parse(namespace)
    except NameInvalid:
        return False
    return access.may(account, Action.PULL, repository)


def may_manage_namespace(access: Access, account: Account | None, namespace: str) -> bool:
    """May `account` change the members of `namespace`? Its admins (the owner of a personal namespace is one) and
    the installation's administrators; a disabled account never."""
    from stevedore.domain.access import may_administer

    if account is None or not account.is_active:
        return False
    return may_administer(account) or access.right_of(account, namespace) is Right.ADMIN


@dataclass(frozen=True)
class NamespaceSummary:
    """A row of the namespaces list. `owner`: the account whose user name it is (a personal namespace)."""

    name: str
    owner: str | None
    members: int  # member rows; the owner of a personal namespace is counted too
    repositories: int


class NamespaceQueries(Protocol):
    """The read model behind the namespaces pages, paged in the database: one query a page."""

    def summaries(self, *, search: str, names: Iterable[str] | None, offset: int, limit: int) -> list[NamespaceSummary]:
        """Namespaces (with a row, or the user name of an account, reserved names excepted) by name; with `names`,
        only those; with `search`, only names containing it."""
        ...


@dataclass(frozen=True)
class MemberChange:
    """What a change did, for the audit log and the page's message: `right` None when the member was removed."""

    namespace: str
    username: str
    right: Right | None
    previous: Right | None


class LastAdmin(InvalidInput):
    pass


class OwnerFixed(InvalidInput):
    pass


class NamespaceManagement:
    """The pages' use cases on a namespace's members, with their rules:

    - only its admins and the installation's administrators change its members (`may_manage_namespace`);
    - the owner of a personal namespace (the account of that user name) is its admin for good: never removed,
      never given another right;
    - a namespace that is not personal keeps at least one admin once it has one: nobody (not even an
      administrator) removes or demotes its last admin from the pages, so it never becomes manageable by
      installation administrators only. To hand it over, add the new admin first, or let an administrator
      `reassign` it (the new admin in, the old ones out, at once). The command line, the operator's tool, is not
      bound by this rule;
    - a refusal raises and changes nothing.
    """

    def __init__(self, service: NamespaceService, access: Access) -> None:
        self.service = service
        self.namespaces = service.namespaces
        self.access = access

    def owner_of(self, namespace: str) -> str | None:
        """The user whose own namespace this is, if any."""
        if is_reserved(namespace):
            return None
        account = self.service.accounts.by_username(namespace)
        return account.username if account is not None else None

    def exists(self, namespace: str) -> bool:
        """A namespace with a row, or the user name of an account (reserved names excepted)."""
        return self.namespaces.get(namespace) is not None or self.owner_of(namespace) is not None

    def create(self, actor: Account | None, name: str, owner: str | None = None) -> Namespace:
        from stevedore.domain.access import may_administer

        if not may_administer(actor):
            raise Denied("only administrators may create namespaces")
        return self.service.create(name, owner=owner or None)

    def set_member(self, actor: Account | None, namespace: str, username: str, right_text: str) -> MemberChange:
        """Give `username` a right on `namespace`, or change the one it has."""
        name = self._managed(actor, namespace)
        right = parse_right(right_text)
        account = self.service.account(username)
        assert account.id is not None
        if account.username == self.owner_of(name):
            raise OwnerFixed(f"{account.username} owns the namespace {name}: it is and stays its admin")
        self.namespaces.lock(name)
        previous = self.namespaces.right_of(name, account.id)
        if previous is Right.ADMIN and right is not Right.ADMIN:
            self._keep_an_admin(name, account.username, "giving them another right")
        self.service.add_member(name, account.username, right)
        return MemberChange(name, account.username, right, previous)

    def remove_member(self, actor: Account | None, namespace: str, username: str) -> MemberChange:
        name = self._managed(actor, namespace)
        account = self.service.account(username)
        assert account.id is not None
        if account.username == self.owner_of(name):
            raise OwnerFixed(f"{account.username} owns the namespace {name}: that cannot be taken away")
        self.namespaces.lock(name)
        previous = self.namespaces.right_of(name, account.id)
        if previous is None:
            raise InvalidInput(f"{account.username} is no member of {name}")
        if previous is Right.ADMIN:
            self._keep_an_admin(name, account.username, "removing them")
        self.service.remove_member(name, account.username)
        return MemberChange(name, account.username, None, previous)

    def reassign(self, actor: Account | None, namespace: str, username: str) -> list[MemberChange]:
        """Administrators only: `username` becomes the admin of `namespace`, and its other admins are removed (its
        pull and push members stay). Not for a personal namespace, which belongs to its user."""
        from stevedore.domain.access import may_administer

        if not may_administer(actor):
            raise Denied("only administrators may reassign a namespace")
        name = self._known(namespace)
        if self.owner_of(name) is not None:
            raise OwnerFixed(f"{name} is the namespace of the user {name}: it cannot be reassigned")
        account = self.service.account(username)
        assert account.id is not None
        self.namespaces.lock(name)
        previous = self.namespaces.right_of(name, account.id)
        changes = []
        if previous is not Right.ADMIN:
            self.service.add_member(name, account.username, Right.ADMIN)
            changes.append(MemberChange(name, account.username, Right.ADMIN, previous))
        for member in self.namespaces.members(name):
            if member.right is Right.ADMIN and member.account_id != account.id:
                self.namespaces.remove_member(name, member.account_id)
                changes.append(MemberChange(name, member.username, None, Right.ADMIN))
        return changes

    def _known(self, namespace: str) -> str:
        name = validate_namespace(namespace)
        if not self.exists(name):
            raise NamespaceUnknown(f"no namespace {name}")
        return name

    def _managed(self, actor: Account | None, namespace: str) -> str:
        name = self._known(namespace)
        if not may_manage_namespace(self.access, actor, name):
            raise Denied(f"only the admins of {name} and administrators may change its members")
        return name

    def _keep_an_admin(self, name: str, username: str, change: str) -> None:
        if self.owner_of(name) is not None:
            return  # its owner is its admin for good
        admins = [m for m in self.namespaces.members(name) if m.right is Right.ADMIN]
        if len(admins) <= 1:
            raise LastAdmin(f"{username} is the last admin of {name}: make someone else its admin before {change}")

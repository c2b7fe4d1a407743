"""Domain layer: robot accounts — logins that belong to a namespace, not to a person (`namespace+name`, Harbor's and
Quay's habit), for CI and deployments.

A robot is an account whose user name holds a `+`, which no person's name may (`validate_username`), so the two can
never collide. It has no password anybody knows: it logs in only with its secret, a personal access token of its
own limited to its namespace, with the scope and expiry its maker chose. What it may do:

- pull: like any account (everything under the `default` and `open` models; under `private` its own namespace only);
- push and delete: in its own namespace only, whatever the access model, and it never claims a namespace;
- nothing at all once its namespace's owner is disabled or deleted (for a user's own namespace), while a team
  namespace's robots keep working when the person who made them leaves.

Namespace admins (and administrators) make, disable, enable and delete them; `RobotService` checks who may.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stevedore.domain.access import Access
from stevedore.domain.access_tokens import (
    MAX_EXPIRY_DAYS,
    AccessToken,
    AccessTokenService,
    IssuedAccessToken,
    TokenScope,
)
from stevedore.domain.errors import AccountExists, Denied, InvalidInput, NotFound
from stevedore.domain.model import MAX_USERNAME_LENGTH, ROBOT_SEPARATOR, Account, robot_namespace
from stevedore.domain.namespaces import is_reserved, may_manage_namespace, validate_namespace
from stevedore.domain.ports import AccountStore, Clock, NamespaceStore

MAX_ROBOTS_PER_NAMESPACE = 100
# bcrypt never accepts this as a hash, so no password opens a robot (and its name cannot log in with one anyway:
# `is_login_name` refuses a `+`).
NO_PASSWORD = "!robot: logs in with its secret only"
_ROBOT_NAME_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


# Who acts from the command line (`stevedore robot …`): an operator with an administrator's say, and no account.
COMMAND_LINE = Account(id=None, username="(command line)", email=None, password_hash=NO_PASSWORD, is_admin=True)


class RobotUnknown(NotFound):
    """No such robot in this namespace."""


def is_robot(username: str) -> bool:
    return robot_namespace(username) is not None


def robot_login(namespace: str, name: str) -> str:
    return f"{namespace}{ROBOT_SEPARATOR}{name}"


def validate_robot_name(text: str, namespace: str) -> str:
    name = (text or "").strip()
    if not _ROBOT_NAME_RE.fullmatch(name):
        raise InvalidInput("a robot's name is lowercase letters and digits, separated by single '.', '_' or '-'")
    if len(robot_login(namespace, name)) > MAX_USERNAME_LENGTH:
        raise InvalidInput(f"a robot's login ({namespace}+name) is at most {MAX_USERNAME_LENGTH} characters")
    return name


def robot_may_act(robot: Account, owner: Account | None, namespace_exists: bool) -> bool:
    """Whether a robot's namespace still stands behind it: a user's own namespace while that user is active; a
    namespace of its own (a team's) while it exists. A robot of a disabled or deleted user does nothing."""
    if not robot.is_active:
        return False
    if owner is not None:
        return owner.is_active
    return namespace_exists


@dataclass(frozen=True)
class Robot:
    account: Account
    credential: AccessToken | None  # its secret's token; None once revoked

    @property
    def login(self) -> str:
        return self.account.username

    @property
    def namespace(self) -> str:
        return self.account.username.partition(ROBOT_SEPARATOR)[0]

    @property
    def name(self) -> str:
        return self.account.username.partition(ROBOT_SEPARATOR)[2]

    def state(self, now: datetime) -> str:
        """`disabled`, `revoked`, `expired` or `active`."""
        if not self.account.is_active:
            return "disabled"
        if self.credential is None:
            return "revoked"
        return self.credential.state(now)


@dataclass(frozen=True)
class IssuedRobot:
    robot: Robot
    secret: str  # shown once, never stored


class RobotStore(Protocol):
    def robots_of(self, namespace: str) -> list[tuple[Account, AccessToken | None]]:
        """The robot accounts of `namespace`, by name, each with its newest unrevoked token (one query)."""
        ...


class RobotService:
    """Robots of one namespace, managed by those who administer it. `access` reads the caller's rights."""

    def __init__(
        self,
        accounts: AccountStore,
        robots: RobotStore,
        namespaces: NamespaceStore,
        tokens: AccessTokenService,
        access: Access,
        clock: Clock,
    ) -> None:
        self.accounts = accounts
        self.robots = robots
        self.namespaces = namespaces
        self.tokens = tokens
        self.access = access
        self.clock = clock

    def may_manage(self, account: Account | None, namespace: str) -> bool:
        """Administrators, and the namespace's admins (a user for its own namespace). Never a robot."""
        if account is None or is_robot(account.username):
            return False
        return may_manage_namespace(self.access, account, namespace)

    def exists(self, namespace: str) -> bool:
        """A namespace with a row, or a user's own namespace."""
        if self.namespaces.get(namespace) is not None:
            return True
        return not is_reserved(namespace) and self.namespaces.is_username(namespace)

    def list(self, caller: Account | None, namespace: str) -> list[Robot]:
        namespace = self._managed(caller, namespace)
        return [Robot(account, token) for account, token in self.robots.robots_of(namespace)]

    def create(
        self,
        caller: Account | None,
        namespace: str,
        *,
        name: str,
        scope: TokenScope | str,
        expires_in_days: int | None,
    ) -> IssuedRobot:
        namespace = self._managed(caller, namespace)
        name = validate_robot_name(name, namespace)
        try:
            scope = TokenScope(scope)
        except ValueError as exc:
            raise InvalidInput("the scope must be pull, push or delete") from exc
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(f"the expiry must be between 1 and {MAX_EXPIRY_DAYS} days")
        login = robot_login(namespace, name)
        if self.accounts.by_username(login) is not None:
            raise AccountExists(f"the robot {login} exists already")
        if len(self.robots.robots_of(namespace)) >= MAX_ROBOTS_PER_NAMESPACE:
            raise InvalidInput(f"a namespace has at most {MAX_ROBOTS_PER_NAMESPACE} robots: delete one first")
        account = self.accounts.add(
            Account(
                id=None,
                username=login,
                email=None,
                password_hash=NO_PASSWORD,
                is_admin=False,
                is_active=True,
                created_at=self.clock.now(),
            )
        )
        issued: IssuedAccessToken = self.tokens.create(
            account,
            name=f"secret of {login}",
            scope=scope,
            namespaces=(namespace,),
            expires_in_days=expires_in_days,
        )
        return IssuedRobot(Robot(account, issued.token), issued.secret)

    def set_active(self, caller: Account | None, namespace: str, name: str, active: bool) -> Robot:
        """Disable (its secret stops at once, and so do tokens issued for it) or enable it again."""
        robot = self._robot(caller, namespace, name)
        account = robot.account
        if account.is_active and not active:
            account.token_generation += 1
        account.is_active = active
        self.accounts.update(account)
        return robot

    def delete(self, caller: Account | None, namespace: str, name: str) -> Robot:
        """Remove the robot and its secret for good; its login may be made again, with a new secret."""
        robot = self._robot(caller, namespace, name)
        self.accounts.delete(robot.account)
        return robot

    def _robot(self, caller: Account | None, namespace: str, name: str) -> Robot:
        namespace = self._managed(caller, namespace)
        login = robot_login(namespace, (name or "").strip())
        for account, token in self.robots.robots_of(namespace):
            if account.username == login:
                return Robot(account, token)
        raise RobotUnknown(f"no robot {login}")

    def _managed(self, caller: Account | None, namespace: str) -> str:
        namespace = validate_namespace(namespace)
        if not self.may_manage(caller, namespace):
            raise Denied(f"only the admins of {namespace} manage its robots")
        if not self.exists(namespace):
            raise NotFound(f"no namespace {namespace}")
        return namespace

"""Domain layer: the authorization rule. Every decision of who may do what to which repository goes through
`Access.may`; the namespace facts it needs (memberships, claims) come through the NamespaceStore port."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from stevedore.domain.errors import Denied
from stevedore.domain.model import Account, RepositoryName, Scope, robot_namespace
from stevedore.domain.namespaces import AccessModel, Namespace, Right, is_reserved, namespace_of
from stevedore.domain.ports import Clock, NamespaceStore


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


REGISTRY_CATALOG = Scope("registry", "catalog", frozenset({"*"}))


def may_administer(account: Account | None) -> bool:
    """May `account` administer the installation (invites, the audit log, users)? Active administrators only."""
    return account is not None and account.is_active and account.is_admin


@dataclass(frozen=True)
class AccessRules:
    """The installation's choices: `stevedore.access_model` and `stevedore.namespace_claiming`."""

    model: AccessModel = AccessModel.DEFAULT
    claiming: bool = True


class Access:
    """Who may do what, for one request (or one command): the rule in `may`, its facts from `namespaces`."""

    def __init__(self, namespaces: NamespaceStore, rules: AccessRules | None = None) -> None:
        self.namespaces = namespaces
        self.rules = rules or AccessRules()
        self._rights: dict[tuple[str, int], Right | None] = {}
        self._claimable: dict[str, bool] = {}

    def may(
        self, account: Account | None, action: Action, repository: RepositoryName, *, by_claim: bool = True
    ) -> bool:
        """May `account` do `action` on `repository`? The one authorization rule:

        - nobody but an active account may do anything; an administrator may do everything;
        - `open`: every active account pulls, pushes and deletes everywhere;
        - pull: `default` lets every active account pull; `private` needs a right on the namespace (pull or more);
        - push: a push or admin right, or, in a namespace nobody has claimed yet (with claiming on), the claim that
          the push itself will make (`claim_for_push`);
        - delete: a push or admin right.

        An account owns (is admin of) the namespace of its user name, unless that name is reserved. With
        `by_claim=False` only rights held now count, not the claim a push here would make: for tokens another
        registry enforces, where no push of ours ever makes that claim.
        """
        if account is None or not account.is_active:
            return False
        robot_of = robot_namespace(account.username)
        if robot_of is not None:
            # A robot (domain/robots.py) pulls like anyone but pushes and deletes in its own namespace alone,
            # whatever the model, and claims nothing.
            if action is Action.PULL and self.rules.model is not AccessModel.PRIVATE:
                return True
            return namespace_of(repository) == robot_of
        if account.is_admin or self.rules.model is AccessModel.OPEN:
            return True
        namespace = namespace_of(repository)
        if action is Action.PULL and self.rules.model is AccessModel.DEFAULT:
            return True
        right = self.right_of(account, namespace)
        if action is Action.PULL:
            return right is not None
        if right is not None and right.includes(Right.PUSH):
            return True
        if not (by_claim and action is Action.PUSH):
            return False
        if self.claimable(namespace):
            return True
        if right is None and account.id is not None:
            # Claimed since its right was read — perhaps by this account's own parallel push on another node: the
            # right, read again, decides (one more query, on this path only).
            self._rights.pop((namespace, account.id), None)
            fresh = self.right_of(account, namespace)
            return fresh is not None and fresh.includes(Right.PUSH)
        return False

    def may_list_catalog(self, account: Account | None) -> bool:
        """The catalog is for every active account; it lists only what the caller may pull."""
        return account is not None and account.is_active

    def right_of(self, account: Account, namespace: str) -> Right | None:
        robot_of = robot_namespace(account.username)
        if robot_of is not None:
            return Right.PUSH if namespace == robot_of else None
        if account.username == namespace and not is_reserved(namespace):
            return Right.ADMIN
        if account.id is None:
            return None
        key = (namespace, account.id)
        if key not in self._rights:
            self._rights[key] = self.namespaces.right_of(namespace, account.id)
        return self._rights[key]

    def claimable(self, namespace: str) -> bool:
        """Would a push claim this namespace? Only with claiming on, for a name that is not reserved, that no row
        and no account names, and that holds no repository yet (those pushed before namespaces existed, or under
        the open model, are for an administrator to give)."""
        if not self.rules.claiming or is_reserved(namespace):
            return False
        if namespace not in self._claimable:
            self._claimable[namespace] = (
                self.namespaces.get(namespace) is None
                and not self.namespaces.is_username(namespace)
                and not self.namespaces.has_repositories(namespace)
            )
        return self._claimable[namespace]

    def claim_for_push(self, account: Account | None, repository: RepositoryName, clock: Clock) -> bool:
        """Before a push writes anything: make sure `account` may push into `repository`, claiming its namespace if
        that is what allows it (the pusher becomes its admin). Raises Denied otherwise, and when another account
        claimed the namespace first: the claim's row is inserted atomically, so of two racing first pushes one
        wins. Run it in the push's own transaction, so a refused or failed push leaves no claim either. True when this
        call claimed the namespace."""
        if account is None or not account.is_active:
            raise Denied(f"push to {repository} denied")
        if robot_namespace(account.username) is not None:
            if self.may(account, Action.PUSH, repository):
                return False
            raise Denied(f"push to {repository} denied: a robot pushes into its own namespace only")
        if account.is_admin or self.rules.model is AccessModel.OPEN:
            return False
        namespace = namespace_of(repository)
        right = self.right_of(account, namespace)
        if right is not None and right.includes(Right.PUSH):
            return False
        if account.id is None:
            raise Denied(f"push to {repository} denied")
        if not self.claimable(namespace):
            # Claimed since its right was read — perhaps by this account's own parallel push on another node.
            self._rights.pop((namespace, account.id), None)
            fresh = self.right_of(account, namespace)
            if fresh is not None and fresh.includes(Right.PUSH):
                return False
            raise Denied(f"push to {repository} denied")
        if not self.namespaces.add(Namespace(namespace, clock.now(), account.id)):
            self._claimable[namespace] = False
            # Another transaction claimed it first — maybe this account's own parallel push (docker pushes layers
            # at once): its right, read afresh now that the winner committed, decides.
            self._rights.pop((namespace, account.id), None)
            won = self.right_of(account, namespace)
            if won is not None and won.includes(Right.PUSH):
                return False
            raise Denied(f"push to {repository} denied: the namespace {namespace} was claimed by someone else")
        self.namespaces.set_member(namespace, account.id, Right.ADMIN)
        self._claimable[namespace] = False
        self._rights[(namespace, account.id)] = Right.ADMIN
        return True

    def grant(self, account: Account, requested: Iterable[Scope], *, by_claim: bool = True) -> list[Scope]:
        """The part of each requested scope that `account` is allowed: the token flow's intersection. Never raises.
        Our own tokens are checked against the account's rights again at every use, so a right taken away ends at
        once. `by_claim=False` (a token for another registry, which never claims anything here) grants push only
        on a right the account holds now, never on the claim a first push of ours would make."""
        granted: list[Scope] = []
        for scope in requested:
            if scope.type == "repository":
                try:
                    name = RepositoryName.parse(scope.name)
                except Exception:
                    continue
                wanted = {a for a in scope.actions if a != "*"}
                if "*" in scope.actions:
                    wanted |= {a.value for a in Action}
                actions = frozenset(
                    a
                    for a in wanted
                    if a in Action._value2member_map_ and self.may(account, Action(a), name, by_claim=by_claim)
                )
                if actions:
                    granted.append(Scope("repository", scope.name, actions))
            elif scope.type == "registry" and scope.name == "catalog" and self.may_list_catalog(account):
                granted.append(REGISTRY_CATALOG)
        return granted

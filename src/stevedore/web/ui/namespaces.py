"""Web layer: the namespaces pages — the list of the namespaces the caller may see (with members and repositories
counted, paged, filtered by name; administrators create namespaces there) and a namespace's page (its owner,
members and rights, repositories), where its admins and the installation's administrators add members, change
their rights and remove them, and administrators reassign it. Every decision goes through the domain
(domain.namespaces: may_see_namespace, may_manage_namespace, NamespaceManagement); every change is audited."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy.orm import Session

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.browse import SqlBrowseQueries
from stevedore.adapters.sql.namespaces import SqlNamespaceQueries, SqlNamespaceStore
from stevedore.domain import browse
from stevedore.domain.access import Access, may_administer
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import Denied, InvalidInput, NameInvalid, NotFound
from stevedore.domain.model import MAX_USERNAME_LENGTH, Account
from stevedore.domain.namespaces import (
    MAX_NAMESPACE_LENGTH,
    AccessModel,
    MemberChange,
    NamespaceManagement,
    NamespaceService,
    NamespaceUnknown,
    Right,
    is_reserved,
    may_manage_namespace,
    may_see_namespace,
    validate_namespace,
)
from stevedore.web.ui.forms import administrator, pop_flashes, refused, sentence
from stevedore.web.ui.invites import when
from stevedore.web.ui.tokens import holder

LIST_TEMPLATE = "stevedore.web:templates/namespaces.jinja2"
PAGE_TEMPLATE = "stevedore.web:templates/namespace.jinja2"
NAMESPACES_PER_PAGE = 50
REPOSITORIES_PER_PAGE = 50
MAX_SEARCH = 255
FLASH_DONE, FLASH_ERROR = "namespaces", "namespaces-error"


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.namespaces", "/namespaces")
    config.add_route("ui.namespace", "/namespaces/{namespace}")
    config.add_route("ui.namespace_members", "/namespaces/{namespace}/members")
    config.add_route("ui.namespace_member_remove", "/namespaces/{namespace}/members/{username}/remove")
    config.add_route("ui.namespace_reassign", "/namespaces/{namespace}/reassign")


class _KnownRights(SqlNamespaceStore):
    """The namespace store with one account's memberships read up front: a whole page decided in one query."""

    def __init__(self, session: Session, account_id: int, rights: dict[str, Right]) -> None:
        super().__init__(session)
        self._account_id = account_id
        self._known = rights

    def right_of(self, name: str, account_id: int) -> Right | None:
        if account_id == self._account_id:
            return self._known.get(name)
        return super().right_of(name, account_id)


def _management(request: Request) -> NamespaceManagement:
    """In the request's transaction; who may act is read like the security policy reads it (`request.access`)."""
    session = request.dbsession
    service = NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), request.registry.stevedore.clock)
    return NamespaceManagement(service, request.access)


def _field(request: Request, key: str, length: int) -> str:
    # One more character than allowed is kept, so a too-long value stays wrong instead of being cut into another.
    return str(request.POST.get(key, "")).strip()[: length + 1]


# --- the list --------------------------------------------------------------------------------------------------------


@view_config(route_name="ui.namespaces", request_method="GET", renderer=LIST_TEMPLATE)
def namespace_list(request: Request) -> dict[str, Any]:
    return _list(request, holder(request))


@view_config(route_name="ui.namespaces", request_method="POST", renderer=LIST_TEMPLATE)
def create_namespace(request: Request) -> Any:
    account = administrator(request)
    form = {"name": _field(request, "name", MAX_NAMESPACE_LENGTH), "owner": _field(request, "owner", 64)}
    try:
        created = _management(request).create(account, form["name"], form["owner"] or None)
    except (InvalidInput, NotFound) as exc:
        refused(request, 400)
        return _list(request, account, form=form, error=sentence(exc.message))
    owner = form["owner"] or None
    request.audit.record(
        AuditAction.NAMESPACE_CREATED,
        namespace=created.name,
        target=created.name,
        detail=f"admin {owner}" if owner else None,
    )
    if owner:
        request.audit.record(AuditAction.MEMBER_ADDED, namespace=created.name, target=owner, detail=Right.ADMIN.value)
    request.session.flash(
        f"The namespace {created.name} is created" + (f", with {owner} as its admin." if owner else "."), FLASH_DONE
    )
    return HTTPSeeOther(location=request.route_path("ui.namespace", namespace=created.name))


def _list(
    request: Request, account: Account, *, form: dict[str, str] | None = None, error: str | None = None
) -> dict[str, Any]:
    search = (request.GET.get("q") or "").strip()[:MAX_SEARCH]
    page = browse.page_number(request.GET.get("page"))
    access: Access = request.access
    queries = SqlNamespaceQueries(request.dbsession)
    visible: set[str] | None = None
    if not may_administer(account) and access.rules.model is AccessModel.PRIVATE and account.id is not None:
        # Narrow in SQL to the namespaces the account has a right on (and its own), then decide each row by the rule.
        rights = queries.rights_of(account.id)
        access = Access(_KnownRights(request.dbsession, account.id, rights), access.rules)
        visible = set(rights)
        if not is_reserved(account.username):
            visible.add(account.username)
    found = queries.summaries(
        search=search, names=visible, offset=(page - 1) * NAMESPACES_PER_PAGE, limit=NAMESPACES_PER_PAGE + 1
    )
    rows = [row for row in found[:NAMESPACES_PER_PAGE] if may_see_namespace(access, account, row.name)]
    done, failed = pop_flashes(request, FLASH_DONE, FLASH_ERROR)
    return {
        "namespaces": rows,
        "search": search,
        "page": page,
        "has_next": len(found) > NAMESPACES_PER_PAGE,
        "may_create": may_administer(account),
        "form": form or {"name": "", "owner": ""},
        "error": error,
        "done": done,
        "failed": failed,
        "max_name": MAX_NAMESPACE_LENGTH,
    }


# --- one namespace ---------------------------------------------------------------------------------------------------


def _visible(request: Request, account: Account, management: NamespaceManagement) -> str:
    """The route's namespace, if it exists and the caller may see it; else the same 404 for both (no oracle)."""
    text = request.matchdict["namespace"]
    try:
        name = validate_namespace(text)
    except NameInvalid:
        raise NamespaceUnknown(f"There is no namespace {text[:MAX_NAMESPACE_LENGTH]}.") from None
    if not management.exists(name) or not may_see_namespace(request.access, account, name):
        raise NamespaceUnknown(f"There is no namespace {name}.")
    return name


@view_config(route_name="ui.namespace", request_method="GET", renderer=PAGE_TEMPLATE)
def namespace_page(request: Request) -> dict[str, Any]:
    account = holder(request)
    management = _management(request)
    return _page(request, account, management, _visible(request, account, management))


@view_config(route_name="ui.namespace_members", request_method="POST", renderer=PAGE_TEMPLATE)
def set_member(request: Request) -> Any:
    account = holder(request)
    management = _management(request)
    name = _visible(request, account, management)
    form = {"username": _field(request, "username", MAX_USERNAME_LENGTH), "right": _field(request, "right", 16)}
    try:
        change = management.set_member(account, name, form["username"], form["right"])
    except Denied as exc:
        raise Denied(sentence(exc.message)) from None
    except (InvalidInput, NotFound) as exc:
        refused(request, 400)
        return _page(request, account, management, name, form=form, error=sentence(exc.message))
    assert change.right is not None
    if change.previous is change.right:
        request.session.flash(f"{change.username} already has {change.right.value} on {name}.", FLASH_DONE)
    else:
        _audit(request, change)
        was = f" (was {change.previous.value})" if change.previous is not None else ""
        request.session.flash(f"{change.username} now has {change.right.value} on {name}{was}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace", namespace=name))


@view_config(route_name="ui.namespace_member_remove", request_method="POST")
def remove_member(request: Request) -> Response:
    account = holder(request)
    management = _management(request)
    name = _visible(request, account, management)
    try:
        change = management.remove_member(account, name, request.matchdict["username"][: MAX_USERNAME_LENGTH + 1])
    except Denied as exc:
        raise Denied(sentence(exc.message)) from None
    except (InvalidInput, NotFound) as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        _audit(request, change)
        request.session.flash(f"{change.username} is no longer a member of {name}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace", namespace=name))


@view_config(route_name="ui.namespace_reassign", request_method="POST", renderer=PAGE_TEMPLATE)
def reassign(request: Request) -> Any:
    account = holder(request)
    management = _management(request)
    name = _visible(request, account, management)
    form = {"new_admin": _field(request, "username", MAX_USERNAME_LENGTH)}
    try:
        changes = management.reassign(account, name, form["new_admin"])
    except Denied as exc:
        raise Denied(sentence(exc.message)) from None
    except (InvalidInput, NotFound) as exc:
        refused(request, 400)
        return _page(request, account, management, name, reassign_form=form, reassign_error=sentence(exc.message))
    for change in changes:
        _audit(request, change, "reassigned")
    request.session.flash(f"{form['new_admin']} is now the admin of {name}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace", namespace=name))


def _audit(request: Request, change: MemberChange, why: str | None = None) -> None:
    if change.right is None:
        action, detail = AuditAction.MEMBER_REMOVED, change.previous.value if change.previous else ""
    else:
        action, detail = AuditAction.MEMBER_ADDED, change.right.value
        if change.previous is not None:
            detail += f" (was {change.previous.value})"
    if why:
        detail += f", {why}"
    request.audit.record(action, namespace=change.namespace, target=change.username, detail=detail)


def _page(
    request: Request,
    account: Account,
    management: NamespaceManagement,
    name: str,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    reassign_form: dict[str, str] | None = None,
    reassign_error: str | None = None,
) -> dict[str, Any]:
    session = request.dbsession
    row = management.namespaces.get(name)
    creator = None
    if row is not None and row.created_by is not None:
        created_by = SqlAccountStore(session).get(row.created_by)
        creator = created_by.username if created_by is not None else None
    page = browse.page_number(request.GET.get("page"))
    found = SqlBrowseQueries(session).repositories(
        search="",
        namespaces=[name],
        offset=(page - 1) * REPOSITORIES_PER_PAGE,
        limit=REPOSITORIES_PER_PAGE + 1,
    )
    owner = management.owner_of(name)
    done, failed = pop_flashes(request, FLASH_DONE, FLASH_ERROR)
    return {
        "name": name,
        "owner": owner,
        "row": row,
        "creator": creator,
        "members": [m for m in management.namespaces.members(name) if m.username != owner],
        "repositories": found[:REPOSITORIES_PER_PAGE],
        "page": page,
        "has_next": len(found) > REPOSITORIES_PER_PAGE,
        "may_manage": may_manage_namespace(request.access, account, name),
        "may_reassign": may_administer(account) and owner is None,
        "rights": list(Right),
        "form": form or {"username": "", "right": Right.PULL.value},
        "error": error,
        "reassign_form": reassign_form or {"new_admin": ""},
        "reassign_error": reassign_error,
        "done": done,
        "failed": failed,
        "when": when,
    }

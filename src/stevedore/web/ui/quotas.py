"""Web layer: a namespace's storage page — what it holds (deduplicated bytes, repositories, each repository's size)
and its quota, which only the installation's administrators set (a namespace's own admins must not raise theirs);
its members see both. And the quotas' part of a request's content lifecycle (domain/quotas.py), which refuses a
push beyond the quota."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.quotas import SqlQuotaStore
from stevedore.domain import browse
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import DigestInvalid, InvalidInput, NameInvalid
from stevedore.domain.lifecycle import Lifecycle
from stevedore.domain.model import Account, Digest
from stevedore.domain.namespaces import (
    MAX_NAMESPACE_LENGTH,
    NamespaceManagement,
    NamespaceService,
    NamespaceUnknown,
    may_see_namespace,
    validate_namespace,
)
from stevedore.domain.quotas import (
    MAX_QUOTA_TEXT,
    PushKind,
    PushRequest,
    Quota,
    QuotaAdministration,
    QuotaEnforcer,
    Usage,
    human_bytes,
    may_see_usage,
    may_set_quota,
)
from stevedore.web.ui.forms import administrator, refused, sentence
from stevedore.web.ui.invites import when
from stevedore.web.ui.tokens import holder

TEMPLATE = "stevedore.web:templates/quota.jinja2"
REPOSITORIES_PER_PAGE = 50
FLASH_DONE = "quota"

# The routes whose pushes may add a blob's bytes, and the query parameters that name the blob up front.
_BLOB_ROUTES = frozenset({"registry.uploads", "registry.upload"})
_MANIFEST_ROUTES = frozenset({"registry.manifest"})


def includeme(config: Configurator) -> None:
    """Routes of these pages (app.py includes this module)."""
    config.add_route("ui.namespace_quota", "/namespaces/{namespace}/quota")
    # The namespace page's usage line (`request.namespace_usage(name)` in namespace.jinja2).
    config.add_request_method(_namespace_usage_method, "namespace_usage")


# --- the lifecycle part ----------------------------------------------------------------------------------------------


def lifecycle_part(request: Request) -> Lifecycle:
    """This part of the request's lifecycle (web/lifecycle.py), built on its first use in a request that writes:
    reads through the look-up connection (outside the push's transaction, which may be about to stream a body),
    measures a blob in the request's transaction (`request.dbsession`, made only then)."""
    return QuotaEnforcer(
        SqlQuotaStore(request.lookup_connection), lambda: SqlQuotaStore(request.dbsession), push_request(request)
    )


def push_request(request: Request) -> PushRequest:
    """What kind of push this request is, and the blob it names before its body is read (`?digest=`, `?mount=`)."""
    route = getattr(getattr(request, "matched_route", None), "name", None)
    if route == "registry.upload" and request.method == "PUT":
        return PushRequest(PushKind.FINISH)
    if route in _BLOB_ROUTES:
        named = request.GET.get("digest") or request.GET.get("mount")
        digest = None
        if named:
            try:
                digest = Digest.parse(named)
            except (DigestInvalid, NameInvalid):
                digest = None  # the view refuses it itself
        return PushRequest(PushKind.BLOB, digest)
    if route in _MANIFEST_ROUTES:
        return PushRequest(PushKind.MANIFEST)
    return PushRequest(PushKind.OTHER)


# --- usage shown on other pages --------------------------------------------------------------------------------------


def _namespace_usage_method(request: Request, namespace: str) -> dict[str, Any] | None:
    return namespace_usage(request, request.web_account, namespace)


def namespace_usage(request: Request, account: Account | None, namespace: str) -> dict[str, Any] | None:
    """The namespace page's usage line: what it holds and its quota, for those who may see them (else None)."""
    if not may_see_usage(request.access, account, namespace):
        return None
    store = SqlQuotaStore(request.dbsession)
    return _usage_view(store.usage(namespace), store.quota(namespace))


def repository_size(request: Request, repository_id: int) -> int:
    """A repository's deduplicated size: its distinct blobs and its manifests (the repository page)."""
    return SqlQuotaStore(request.dbsession).repository_usage_by_id(repository_id).bytes


def _usage_view(usage: Usage, quota: Quota | None) -> dict[str, Any]:
    max_bytes = quota.max_bytes if quota else None
    max_repositories = quota.max_repositories if quota else None
    return {
        "usage": usage,
        "quota": quota,
        "used": human_bytes(usage.bytes),
        "limit": human_bytes(max_bytes) if max_bytes is not None else None,
        "percent": _percent(usage.bytes, max_bytes),
        "over": max_bytes is not None and usage.bytes > max_bytes,
        "repositories_limit": max_repositories,
        "repositories_full": max_repositories is not None and usage.repositories >= max_repositories,
    }


def _percent(used: int, limit: int | None) -> int | None:
    if limit is None:
        return None
    if limit == 0:
        return 100 if used == 0 else 999
    return min(999, used * 100 // limit)


# --- the page --------------------------------------------------------------------------------------------------------


def _namespace(request: Request, account: Account) -> str:
    """The route's namespace if it exists and the caller may see its storage; the same 404 as the namespace page for
    one that does not exist, 403 for one it may see but is no member of."""
    session = request.dbsession
    text = request.matchdict["namespace"]
    try:
        name = validate_namespace(text)
    except NameInvalid:
        raise NamespaceUnknown(f"There is no namespace {text[:MAX_NAMESPACE_LENGTH]}.") from None
    management = NamespaceManagement(
        NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), request.registry.stevedore.clock),
        request.access,
    )
    if not management.exists(name) or not may_see_namespace(request.access, account, name):
        raise NamespaceUnknown(f"There is no namespace {name}.")
    if not may_see_usage(request.access, account, name):
        raise HTTPForbidden()
    return name


@view_config(route_name="ui.namespace_quota", request_method="GET", renderer=TEMPLATE)
def quota_page(request: Request) -> dict[str, Any]:
    account = holder(request)
    return _page(request, account, _namespace(request, account))


@view_config(route_name="ui.namespace_quota", request_method="POST", renderer=TEMPLATE)
def set_quota(request: Request) -> Any:
    account = administrator(request)  # a 403 page for anyone else, the namespace's own admins included
    name = _namespace(request, account)
    form = {
        "max_bytes": str(request.POST.get("max_bytes", "")).strip()[: MAX_QUOTA_TEXT + 1],
        "max_repositories": str(request.POST.get("max_repositories", "")).strip()[: MAX_QUOTA_TEXT + 1],
    }
    administration = QuotaAdministration(SqlQuotaStore(request.dbsession), request.registry.stevedore.clock)
    try:
        change = administration.set_quota(account, name, form["max_bytes"], form["max_repositories"])
    except InvalidInput as exc:
        refused(request, 400)
        return _page(request, account, name, form=form, error=sentence(exc.message))
    if change.changed:
        request.audit.record(AuditAction.QUOTA_SET, namespace=name, target=name, detail=change.describe())
        shown = change.new.describe() if change.new else "no quota"
        request.session.flash(f"The quota of {name} is now: {shown}.", FLASH_DONE)
    else:
        request.session.flash(f"The quota of {name} is unchanged.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace_quota", namespace=name))


def _form_of(quota: Quota | None) -> dict[str, str]:
    if quota is None:
        return {"max_bytes": "", "max_repositories": ""}
    return {
        "max_bytes": "" if quota.max_bytes is None else _exact_size(quota.max_bytes),
        "max_repositories": "" if quota.max_repositories is None else str(quota.max_repositories),
    }


def _exact_size(size: int) -> str:
    """The largest binary unit that shows the size exactly (`10 GiB`), else bytes: sending the form back unchanged
    keeps the quota exactly as it is."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return str(size)


def _page(
    request: Request,
    account: Account,
    name: str,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    store = SqlQuotaStore(request.dbsession)
    quota = store.quota(name)
    page = browse.page_number(request.GET.get("page"))
    found = store.repository_usages(name, offset=(page - 1) * REPOSITORIES_PER_PAGE, limit=REPOSITORIES_PER_PAGE + 1)
    session = request.session
    done = session.pop_flash(FLASH_DONE) if f"_f_{FLASH_DONE}" in session else []
    return {
        "name": name,
        **_usage_view(store.usage(name), quota),
        "repositories": [(repo, usage.bytes) for repo, usage in found[:REPOSITORIES_PER_PAGE]],
        "page": page,
        "has_next": len(found) > REPOSITORIES_PER_PAGE,
        "may_set": may_set_quota(account),
        "form": form or _form_of(quota),
        "error": error,
        "done": done,
        "when": when,
        "human_bytes": human_bytes,
        "max_text": MAX_QUOTA_TEXT,
    }

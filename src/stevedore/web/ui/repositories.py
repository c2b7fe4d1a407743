"""Web layer: the repository pages — the list, a repository's tags, a manifest — and deleting a tag or a whole
repository from them. Every decision goes through `request.access`; a repository the caller may not pull looks
exactly like one that does not exist (404), so the pages are no oracle for names."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.browse import SqlBrowseQueries
from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.repository_deletion import SqlRepositoryDeletionStore
from stevedore.domain import browse
from stevedore.domain.access import Access, Action
from stevedore.domain.audit import AuditAction
from stevedore.domain.browse import TagCursor, TagSort
from stevedore.domain.errors import DigestInvalid, NameInvalid, StevedoreError, TagInvalid
from stevedore.domain.model import Account, Digest, Reference, RepositoryName, Tag
from stevedore.domain.namespaces import AccessModel, Right, is_reserved
from stevedore.domain.repository_deletion import RepositoryDeletion
from stevedore.web.ui import quotas
from stevedore.web.ui.forms import refused
from stevedore.web.ui.rules import repository_deletion_guard

log = logging.getLogger(__name__)

REPOSITORIES_PER_PAGE = 50
TAGS_PER_PAGE = 50
MAX_SEARCH = 255
T = "stevedore.web:templates/"


class _KnownRights(SqlNamespaceStore):
    """The namespace store, with one account's memberships read up front (one query for a whole page)."""

    def __init__(self, session: Database, account_id: int, rights: dict[str, Right]) -> None:
        super().__init__(session)
        self._account_id = account_id
        self._known = rights

    def right_of(self, name: str, account_id: int) -> Right | None:
        if account_id == self._account_id:
            return self._known.get(name)
        return super().right_of(name, account_id)


def _account(request: Request) -> Account:
    account: Account | None = request.web_account
    if account is None:  # the views' permission lets only the logged-in in
        raise HTTPNotFound()
    return account


def _queries(request: Request) -> SqlBrowseQueries:
    return SqlBrowseQueries(request.dbsession)


def registry_host(request: Request) -> str:
    """What goes before the name in `docker pull`: the public URL's host, else the one this request came to."""
    public_url = request.registry.stevedore.settings.public_url
    if public_url:
        return str(urlsplit(public_url).netloc)
    return str(request.host)


def _pullable(request: Request, queries: SqlBrowseQueries) -> tuple[RepositoryName, int]:
    """The route's repository and its id, or 404 — the same 404 for a bad name, an unknown repository and one the
    caller may not pull."""
    try:
        name = RepositoryName.parse(request.matchdict.get("name", ""))
    except NameInvalid:
        raise HTTPNotFound() from None
    if not request.access.may(_account(request), Action.PULL, name):
        raise HTTPNotFound()
    repository_id = queries.repository_id(name.value)
    if repository_id is None:
        raise HTTPNotFound()
    return name, repository_id


def _helpers() -> dict[str, Any]:
    return {"human_size": browse.human_size, "short_digest": browse.short_digest}


def pull_visibility(request: Request, account: Account, queries: SqlBrowseQueries) -> tuple[Access, set[str] | None]:
    """How a list shows only what `account` may pull: the namespaces to filter on in SQL (None: no filter), and
    the Access to check each row with. Under `private` a non-administrator sees the namespaces it has a right on
    and its own; their rights are read in one query, so checking every row by the rule itself costs no more."""
    access: Access = request.access
    if account.is_admin or access.rules.model is not AccessModel.PRIVATE or account.id is None:
        return access, None
    rights = queries.rights_of(account.id)
    visible = set(rights)
    if not is_reserved(account.username):
        visible.add(account.username)
    return Access(_KnownRights(request.lookup_connection, account.id, rights), access.rules), visible


@view_config(route_name="ui.repositories", request_method="GET", renderer=T + "repositories.jinja2")
def repository_list(request: Request) -> dict[str, Any]:
    account = _account(request)
    queries = _queries(request)
    search = (request.GET.get("q") or "").strip()[:MAX_SEARCH]
    page = browse.page_number(request.GET.get("page"))
    access, visible_namespaces = pull_visibility(request, account, queries)
    found = queries.repositories(
        search=search,
        namespaces=visible_namespaces,
        offset=(page - 1) * REPOSITORIES_PER_PAGE,
        limit=REPOSITORIES_PER_PAGE + 1,
    )
    has_next = len(found) > REPOSITORIES_PER_PAGE
    rows = [r for r in found[:REPOSITORIES_PER_PAGE] if access.may(account, Action.PULL, RepositoryName(r.name))]
    return {
        "repositories": rows,
        "search": search,
        "page": page,
        "has_next": has_next,
        "registry_host": registry_host(request),
        "flashes": request.session.pop_flash(),
        **_helpers(),
    }


@view_config(route_name="ui.repository", request_method="GET", renderer=T + "repository.jinja2")
def repository_page(request: Request) -> dict[str, Any]:
    account = _account(request)
    queries = _queries(request)
    name, repository_id = _pullable(request, queries)
    sort = TagSort.parse(request.GET.get("sort"))
    after = TagCursor.parse(sort, request.GET.get("after"))
    before = None if after is not None else TagCursor.parse(sort, request.GET.get("before"))

    def fetch(*, after: TagCursor | None, before: TagCursor | None, limit: int) -> list[browse.TagRow]:
        return queries.tags(repository_id, sort=sort, after=after, before=before, limit=limit)

    # One query for the page's tags with their manifests and pushers, one for the platform images of the indexes
    # among them (none without indexes), one count: the same few, however many tags the repository holds.
    page = browse.tag_page(fetch, sort, after=after, before=before, per_page=TAGS_PER_PAGE)
    children = queries.manifests(repository_id, browse.child_digests(page.rows))
    return {
        "name": name.value,
        "tags": browse.tag_views(page.rows, children),
        "tag_count": queries.tag_count(repository_id),
        "size": quotas.repository_size(request, repository_id),  # deduplicated: its distinct blobs and manifests
        "sort": sort.value,
        "paged": after is not None or before is not None,
        "previous": page.previous.text() if page.previous else None,
        "next": page.next.text() if page.next else None,
        "registry_host": registry_host(request),
        "may_delete": request.access.may(account, Action.DELETE, name),
        "flashes": request.session.pop_flash(),
        **_helpers(),
    }


def _read_config(request: Request, digest: Digest, size: int) -> tuple[browse.ImageConfig | None, str | None]:
    """The image config through the blob store, size-limited; (config, None) or (None, why not)."""
    if size > browse.MAX_CONFIG_BYTES:
        return None, f"The config is larger than {browse.human_size(browse.MAX_CONFIG_BYTES)}; it is not shown."
    data = bytearray()
    try:
        for chunk in request.registry.stevedore.blob_store.open(digest):
            data += chunk
            if len(data) > browse.MAX_CONFIG_BYTES:
                return None, "The config is too large to show."
    except (StevedoreError, OSError):
        log.warning("config blob %s of a manifest is not readable", digest)
        return None, "The config blob is not available."
    config = browse.parse_config(bytes(data))
    return (config, None) if config is not None else (None, "The config is not a JSON object.")


@view_config(route_name="ui.manifest", request_method="GET", renderer=T + "manifest.jinja2")
def manifest_page(request: Request) -> dict[str, Any]:
    account = _account(request)
    queries = _queries(request)
    name, repository_id = _pullable(request, queries)
    try:
        digest = Digest.parse(request.matchdict.get("digest", ""))
    except DigestInvalid:
        raise HTTPNotFound() from None
    manifest = queries.manifest(repository_id, str(digest))
    if manifest is None:
        raise HTTPNotFound()
    document = browse.load_document(manifest.content)
    is_index = browse.is_index(manifest.media_type, document)
    config_descriptor = document.get("config") if isinstance(document.get("config"), dict) else None
    layers = [d for d in document.get("layers") or [] if isinstance(d, dict)] if not is_index else []
    config = None
    config_note = None
    if config_descriptor is not None:
        media_type = config_descriptor.get("mediaType")
        config_digest_text = config_descriptor.get("digest")
        if media_type in browse.IMAGE_CONFIG_TYPES and isinstance(config_digest_text, str):
            try:
                config_digest = Digest.parse(config_digest_text)
            except DigestInvalid:
                config_note = "The config's digest is not valid."
            else:
                config, config_note = _read_config(
                    request, config_digest, browse.image_size({"config": config_descriptor})
                )
    children = browse.index_children(document) if is_index else []
    present = queries.manifests(repository_id, [c.digest for c in children]) if children else {}
    annotations = document.get("annotations")
    subject = document.get("subject") if isinstance(document.get("subject"), dict) else None
    return {
        "name": name.value,
        "manifest": manifest,
        "is_index": is_index,
        "config_descriptor": config_descriptor,
        "layers": layers,
        "total_size": None if is_index else browse.image_size(document),
        "config": config,
        "config_note": config_note,
        "children": children,
        "present": set(present),
        "annotations": {k: v for k, v in annotations.items() if isinstance(v, str)}
        if isinstance(annotations, dict)
        else {},
        "subject": subject.get("digest") if subject and isinstance(subject.get("digest"), str) else None,
        "referrers": request.registry_service.referrers(name, digest),
        "tags": queries.tags_of(repository_id, str(digest)),
        "registry_host": registry_host(request),
        "may_delete": request.access.may(account, Action.DELETE, name),
        **_helpers(),
    }


# --- deletion --------------------------------------------------------------------------------------------------


def _deletable(request: Request, name: RepositoryName) -> None:
    """403 (the forbidden page) unless the caller may delete in this repository, which it may see."""
    if not request.access.may(_account(request), Action.DELETE, name):
        raise HTTPForbidden()


@view_config(route_name="ui.tag_delete", request_method="POST")
def delete_tag(request: Request) -> Response:
    queries = _queries(request)
    name, _repository_id = _pullable(request, queries)
    _deletable(request, name)
    try:
        tag = Tag.parse(request.matchdict.get("tag", ""))
    except TagInvalid:
        raise HTTPNotFound() from None
    request.registry_service.delete_manifest(
        name, Reference(tag=tag), _account(request).username
    )  # ManifestUnknown: the 404 page
    request.audit.record(AuditAction.DELETE_TAG, repository=name, target=f"{name}:{tag.value}", detail="pages")
    log.info("tag %s:%s deleted from the pages by %s", name, tag, _account(request).username)
    request.session.flash(f"The tag {tag.value} was deleted.")
    return HTTPSeeOther(location=request.route_path("ui.repository", name=name.value))


def _stored_manifest(request: Request, queries: SqlBrowseQueries) -> tuple[RepositoryName, int, Digest]:
    """The route's repository (pullable and deletable by the caller) and a manifest it holds, or the 404/403 page."""
    name, repository_id = _pullable(request, queries)
    _deletable(request, name)
    try:
        digest = Digest.parse(request.matchdict.get("digest", ""))
    except DigestInvalid:
        raise HTTPNotFound() from None
    if queries.manifest(repository_id, str(digest)) is None:
        raise HTTPNotFound()
    return name, repository_id, digest


@view_config(route_name="ui.manifest_delete", request_method="GET", renderer=T + "confirm_delete.jinja2")
def confirm_manifest_delete(request: Request) -> dict[str, Any]:
    queries = _queries(request)
    name, repository_id, digest = _stored_manifest(request, queries)
    return {
        "name": name.value,
        "digest": str(digest),
        "tags": queries.tags_of(repository_id, str(digest)),
        "short_digest": browse.short_digest,
    }


@view_config(route_name="ui.manifest_delete", request_method="POST")
def delete_manifest(request: Request) -> Response:
    """The manifest and every tag on it, as `DELETE /v2/<name>/manifests/<digest>` does (the same use case)."""
    queries = _queries(request)
    name, _repository_id, digest = _stored_manifest(request, queries)
    # ManifestUnknown: the 404 page
    request.registry_service.delete_manifest(name, Reference(digest=digest), _account(request).username)
    request.audit.record(AuditAction.DELETE_MANIFEST, repository=name, target=f"{name}@{digest}", detail="pages")
    log.info("manifest %s@%s deleted from the pages by %s", name, digest, _account(request).username)
    request.session.flash(f"The manifest {browse.short_digest(str(digest))} and its tags were deleted.")
    return HTTPSeeOther(location=request.route_path("ui.repository", name=name.value))


@view_config(route_name="ui.repository_delete", request_method="GET", renderer=T + "confirm_delete.jinja2")
def confirm_repository_delete(request: Request) -> dict[str, Any]:
    queries = _queries(request)
    name, repository_id = _pullable(request, queries)
    _deletable(request, name)
    return {"name": name.value, "tag_count": queries.tag_count(repository_id), "error": None}


@view_config(route_name="ui.repository_delete", request_method="POST", renderer=T + "confirm_delete.jinja2")
def delete_repository(request: Request) -> dict[str, Any] | Response:
    queries = _queries(request)
    name, repository_id = _pullable(request, queries)
    _deletable(request, name)
    if request.POST.get("confirm_name", "").strip() != name.value:
        refused(request, 400)
        return {
            "name": name.value,
            "tag_count": queries.tag_count(repository_id),
            "error": "Type the repository's name exactly to delete it.",
        }
    account = _account(request)
    deletion = RepositoryDeletion(
        SqlRepositoryDeletionStore(request.dbsession),
        request.access,
        repository_deletion_guard(request),
        # The request's lifecycle, as /v2/ deletions have: the namespace's webhooks hear a delete per manifest and tag.
        lifecycle=request.registry_service.lifecycle,
        clock=request.registry.stevedore.clock,
    )  # Denied (an immutable tag): the 403 page with the rule
    deletion.delete(account, name, actor=account.username)
    request.audit.record(AuditAction.DELETE_REPOSITORY, repository=name, detail="pages")
    log.info("repository %s deleted from the pages by %s", name, account.username)
    request.session.flash(f"The repository {name.value} was deleted.")
    return HTTPSeeOther(location=request.route_path("ui.repositories"))

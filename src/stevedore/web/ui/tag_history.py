"""Web layer: a tag's history page and putting a tag back on an earlier digest from it, and the tag history's part of
the content lifecycle of a request (every tag move recorded in the request's transaction)."""

from __future__ import annotations

import logging
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound, HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.browse import SqlBrowseQueries
from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tag_history import SqlTagHistoryQueries, SqlTagHistoryStore
from stevedore.domain import browse
from stevedore.domain.access import Action
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import Denied, DigestInvalid, InvalidInput, NotFound, StevedoreError, TagInvalid
from stevedore.domain.lifecycle import Lifecycle, TagChange
from stevedore.domain.model import Digest, RepositoryName, Tag
from stevedore.domain.tag_history import HistoryCursor, TagHistoryRecorder, TagUnknown, history_page, restore_detail
from stevedore.web.ui.forms import refused
from stevedore.web.ui.repositories import _account, _pullable

log = logging.getLogger(__name__)

TEMPLATE = "stevedore.web:templates/tag_history.jinja2"


def includeme(config: Configurator) -> None:
    """Routes of these pages (app.py includes this module). `ui.tag_history` and `ui.tag_restore` are in routes.py,
    before the repository catch-all."""


def lifecycle_part(request: Request) -> Lifecycle:
    """This part of the request's lifecycle (web/lifecycle.py), built on its first use in a request that writes: one
    INSERT a tag move, in the request's own transaction."""
    return TagHistoryRecorder(_RequestTagHistoryStore(request))


class _RequestTagHistoryStore:
    """The SQL store on the request's session, asked for only when a tag moved: an upload, which hears the lifecycle
    too, never makes the request's write session for it."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def record(self, change: TagChange) -> None:
        SqlTagHistoryStore(self.request.dbsession).record(change)


def _tag(request: Request) -> Tag:
    try:
        return Tag.parse(request.matchdict.get("tag", ""))
    except TagInvalid:
        raise HTTPNotFound() from None


def _page(request: Request, database: Database, *, error: str | None = None) -> dict[str, Any]:
    """What the history page shows, read through `database`; 404 for a repository the caller may not pull and for a
    tag that neither exists nor has history."""
    name, repository_id = _pullable(request, SqlBrowseQueries(database))
    tag = _tag(request)
    may_restore = request.access.may(_account(request), Action.PUSH, name)
    before = HistoryCursor.parse(request.GET.get("before"))
    try:
        page = history_page(
            SqlTagHistoryQueries(database), repository_id, tag.value, before=before, may_restore=may_restore
        )
    except TagUnknown:
        raise HTTPNotFound() from None
    return {
        "name": name.value,
        "tag": tag.value,
        "current": page.current,
        "entries": page.entries,
        "older": page.older.text() if page.older else None,
        "paged": before is not None,
        "may_restore": may_restore,
        "error": error,
        "flashes": request.session.pop_flash() if error is None else [],
        "short_digest": browse.short_digest,
    }


@view_config(route_name="ui.tag_history", request_method="GET", renderer=TEMPLATE)
def tag_history_page(request: Request) -> dict[str, Any]:
    return _page(request, request.dbsession)


@view_config(route_name="ui.tag_restore", request_method="POST")
def restore_tag(request: Request) -> Response:
    """Put the tag back on the posted digest, which the repository must still hold. A refusal shows the history page
    again with the reason and a 4xx, the request's writes dropped."""
    account = _account(request)
    name, _repository_id = _pullable(request, SqlBrowseQueries(request.dbsession))
    if not request.access.may(account, Action.PUSH, name):
        raise HTTPForbidden()
    tag = _tag(request)
    try:
        digest = Digest.parse(request.POST.get("digest", "").strip())
        change = request.registry_service.restore_tag(name, tag, digest, account.username)
    except StevedoreError as error:
        return _refused(request, name, tag, error)
    history = request.route_path("ui.tag_history", name=name.value, tag=tag.value)
    if not change.moved:
        request.session.flash(f"The tag {tag.value} already points at {browse.short_digest(str(digest))}.")
        return HTTPSeeOther(location=history)
    old = str(change.old) if change.old is not None else None
    request.audit.record(
        AuditAction.TAG_RESTORED, repository=name, target=f"{name}:{tag.value}", detail=restore_detail(str(digest), old)
    )
    log.info("tag %s:%s restored to %s (was %s) by %s", name, tag, digest, old, account.username)
    request.session.flash(f"The tag {tag.value} points at {browse.short_digest(str(digest))} again.")
    return HTTPSeeOther(location=history)


def _refused(request: Request, name: RepositoryName, tag: Tag, error: StevedoreError) -> Response:
    """The history page with why the restore was refused. Read through the look-up connection: the request's own
    transaction may hold the refused change (a rule refuses after the store moved the tag), and is dropped."""
    if isinstance(error, DigestInvalid):
        status, message = 400, "That is not a digest this registry knows how to restore."
    elif isinstance(error, NotFound):
        posted = request.POST.get("digest", "")
        status = 404
        message = (
            f"The manifest {browse.short_digest(posted)} is no longer in repository {name}: the tag cannot be put "
            "back on it. Nothing was changed."
        )
    elif isinstance(error, Denied | InvalidInput):
        status = 403 if isinstance(error, Denied) else 400
        message = f"The tag {tag.value} was not restored: {error.message}"
    else:
        raise error
    log.info("restore of %s:%s refused: %s", name, tag, error.message)
    refused(request, status)
    response = render_to_response(TEMPLATE, _page(request, request.lookup_connection, error=message), request=request)
    response.status = status
    return response

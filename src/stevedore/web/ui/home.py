"""Web layer: the front page, for visitors, for people logged in (with the latest pushes they may pull), and for an
installation still to be set up."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.adapters.sql.browse import SqlBrowseQueries
from stevedore.domain.access import Action
from stevedore.domain.browse import RecentPush, short_digest
from stevedore.domain.model import Account, RepositoryName
from stevedore.web.ui.repositories import pull_visibility

RECENT_PUSHES = 10


def recent_pushes(request: Request, account: Account) -> list[RecentPush]:
    """The latest tag pushes `account` may pull: filtered in the query by namespace under `private` (the same
    filter as the repository list), then each row checked by the rule itself with no further query."""
    if not account.is_active:
        return []
    queries = SqlBrowseQueries(request.dbsession)
    access, namespaces = pull_visibility(request, account, queries)
    found = queries.recent_pushes(namespaces=namespaces, limit=RECENT_PUSHES)
    return [push for push in found if access.may(account, Action.PULL, RepositoryName(push.repository))]


@view_config(route_name="ui.home", renderer="stevedore.web:templates/home.jinja2", permission=NO_PERMISSION_REQUIRED)
def home(request: Request) -> dict[str, Any]:
    settings = request.registry.stevedore.settings
    account: Account | None = request.web_account
    return {
        "needs_setup": request.account_store.count() == 0,
        "registry_host": request.host,
        "public_url": settings.public_url,
        "recent_pushes": recent_pushes(request, account) if account is not None else [],
        "short_digest": short_digest,
    }

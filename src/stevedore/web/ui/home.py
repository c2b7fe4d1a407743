"""Web layer: the front page."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config


@view_config(route_name="ui.home", renderer="stevedore.web:templates/home.jinja2", permission=NO_PERMISSION_REQUIRED)
def home(request: Request) -> dict[str, Any]:
    return {
        "needs_setup": request.account_store.count() == 0,
        "registry_host": request.host,
    }


@view_config(route_name="ui.login", renderer="stevedore.web:templates/login.jinja2", permission=NO_PERMISSION_REQUIRED)
def login(request: Request) -> dict[str, Any]:
    return {}

"""Web layer: the front page, for visitors, for people logged in, and for an installation still to be set up."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config


@view_config(route_name="ui.home", renderer="stevedore.web:templates/home.jinja2", permission=NO_PERMISSION_REQUIRED)
def home(request: Request) -> dict[str, Any]:
    settings = request.registry.stevedore.settings
    return {
        "needs_setup": request.account_store.count() == 0,
        "registry_host": request.host,
        "public_url": settings.public_url,
    }

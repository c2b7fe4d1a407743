"""Pages: administrators' user pages: list, disable, enable, make or unmake administrator, reset."""

from __future__ import annotations

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.users", "/users")
    config.add_route("ui.user", "/users/{username}")

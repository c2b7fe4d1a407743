"""Pages: forgotten passwords: the mailed single-use reset link."""

from __future__ import annotations

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.password_forgot", "/password/forgot")
    config.add_route("ui.password_reset", "/password/reset")  # ?code=CODE

"""Pages: namespaces, their members and rights."""

from __future__ import annotations

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.namespaces", "/namespaces")
    config.add_route("ui.namespace", "/namespaces/{namespace}")

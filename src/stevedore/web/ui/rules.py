"""Web layer: the rules pages (to be built), and this part of the content lifecycle for a request."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request

from stevedore.domain.lifecycle import Lifecycle, NoLifecycle


def includeme(config: Configurator) -> None:
    """Routes of these pages (app.py includes this module)."""
    config.add_route("ui.namespace_rules", "/namespaces/{namespace}/rules")


def lifecycle_part(request: Request) -> Lifecycle:
    """This part of the request's lifecycle (web/lifecycle.py), built on its first use in a request that writes."""
    return NoLifecycle()

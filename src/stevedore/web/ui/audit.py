"""Web layer: the audit pages (being built)."""

from __future__ import annotations

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    """Request methods and anything else this part wires into the app (app.py includes it)."""

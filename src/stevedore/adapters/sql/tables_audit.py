"""SQL adapter: the audit tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

from stevedore.adapters.sql.tables import metadata  # noqa: F401 - the tables here are added to it

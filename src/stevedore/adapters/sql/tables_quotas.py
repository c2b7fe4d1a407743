"""SQL adapter: the quotas tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

"""Web sessions, the one-time setup code, password resets, login backoff and the audit log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in with the work of the index issue


def downgrade() -> None:
    pass

"""The migrations are the only way a schema is built: they must match the tables the code describes, and go both
ways, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.migrations import downgrade, upgrade
from stevedore.adapters.sql.tables import metadata


def test_migrated_schema_matches_the_tables(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_to_nothing_and_back(database_url):
    downgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert {"accounts", "manifests", "tags", "uploads"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

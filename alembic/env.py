"""Alembic environment: the database URL comes from the same ini (and STEVEDORE_DATABASE_URL) as the app."""

from __future__ import annotations

import contextlib
import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import metadata

config = context.config


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    if os.environ.get("STEVEDORE_DATABASE_URL"):
        return os.environ["STEVEDORE_DATABASE_URL"]
    section = config.get_section("app:main") or {}
    url = section.get("stevedore.database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: set stevedore.database_url in [app:main] or STEVEDORE_DATABASE_URL")
    return url


if config.config_file_name and config.attributes.get("configure_logging", True):
    with contextlib.suppress(KeyError):  # an ini without logging sections
        fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


def _migrate(conn: sa.Connection) -> None:
    # SQLite rebuilds a table to change it (batch mode): with foreign keys enforced, dropping the old table would
    # cascade into every table referencing it. Enforcement can only be switched outside a transaction, so it is
    # done on the driver's connection (in autocommit mode, see engine.py) before alembic begins one, and checked.
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys=OFF")
        if driver.execute("PRAGMA foreign_keys").fetchone() != (0,):
            raise RuntimeError("cannot switch SQLite's foreign keys off (a transaction is open): nothing was changed")
        dangling_before = {tuple(row) for row in driver.execute("PRAGMA foreign_key_check").fetchall()}
    try:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and _dangling_references(conn) - dangling_before:  # in the migration's transaction
                raise RuntimeError("the migration left references that point nowhere: nothing was changed")
    finally:
        if sqlite:
            driver.execute("PRAGMA foreign_keys=ON")


def _dangling_references(conn: sa.Connection) -> set[tuple[object, ...]]:
    """SQLite's foreign_key_check: (table, rowid, referenced table, constraint) for each reference to nothing. Rows
    that dangled before a migration are not its fault; new ones are."""
    return {tuple(row) for row in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

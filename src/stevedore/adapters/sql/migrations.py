"""SQL adapter: run the Alembic migrations — the only way a schema is ever built, in tests too."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
DEFAULT_SCRIPT_LOCATION = os.path.join(REPO_ROOT, "alembic")


def alembic_config(database_url: str, ini_path: str | None = None) -> Config:
    config = Config(ini_path) if ini_path else Config()
    if not config.get_main_option("script_location"):
        config.set_main_option("script_location", DEFAULT_SCRIPT_LOCATION)
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = ini_path is not None
    return config


def upgrade(database_url: str, ini_path: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url, ini_path), revision)


def downgrade(database_url: str, ini_path: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url, ini_path), revision)

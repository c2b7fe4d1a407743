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


def test_upgrading_a_populated_database_keeps_every_reference_to_an_account(database_url):
    """0002 rebuilds SQLite's accounts table: invites and uploads that point at accounts must come through."""
    downgrade(database_url)
    upgrade(database_url, revision="0001")
    engine = make_engine(database_url)
    when = {"when": "2026-01-01 00:00:00+00:00"}
    try:
        with engine.begin() as conn:
            for statement in (
                "INSERT INTO accounts (username, password_hash, is_admin, is_active, created_at) "
                "VALUES ('a', 'x', :no, :yes, :when), ('b', 'x', :no, :yes, :when)",
                "INSERT INTO invites (code_hash, created_by, used_by, created_at, expires_at) "
                "VALUES ('h', 1, 2, :when, :when)",
                "INSERT INTO repositories (id, name, created_at) VALUES (1, 'r', :when)",
                "INSERT INTO uploads (id, repository_id, account_id, digest_algorithm, created_at) "
                "VALUES ('u', 1, 2, 'sha256', :when)",
            ):
                conn.execute(sa.text(statement), {**when, "no": False, "yes": True})
        upgrade(database_url)
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT created_by, used_by FROM invites")).all() == [(1, 2)]
            assert conn.execute(sa.text("SELECT account_id FROM uploads")).all() == [(2,)]
            assert conn.execute(sa.text("SELECT id, token_generation FROM accounts ORDER BY id")).all() == [
                (1, 0),
                (2, 0),
            ]
            conn.execute(sa.text("DELETE FROM uploads"))
            conn.execute(sa.text("UPDATE invites SET used_by = NULL"))
            conn.execute(sa.text("DELETE FROM accounts WHERE id = 2"))
            conn.execute(
                sa.text(
                    "INSERT INTO accounts (username, password_hash, is_admin, is_active, created_at) "
                    "VALUES ('c', 'x', :no, :yes, :when)"
                ),
                {**when, "no": False, "yes": True},
            )
            assert conn.execute(sa.text("SELECT id FROM accounts WHERE username = 'c'")).scalar_one() == 3
    finally:
        engine.dispose()


def test_password_resets_come_with_0009_and_go_with_its_downgrade(database_url):
    engine = make_engine(database_url)
    try:
        assert "password_resets" in sa.inspect(engine).get_table_names()
        downgrade(database_url, revision="0008")
        engine.dispose()
        assert "password_resets" not in sa.inspect(engine).get_table_names()
        assert "accounts" in sa.inspect(engine).get_table_names()
        upgrade(database_url)
        engine.dispose()
        columns = {c["name"] for c in sa.inspect(engine).get_columns("password_resets")}
        assert columns == {
            "id", "account_id", "code_hash", "created_at", "expires_at", "created_by", "used_at", "revoked_at"
        }  # fmt: skip
    finally:
        engine.dispose()


def test_0010_adds_who_pushed_a_tag_and_existing_tags_have_no_pusher(database_url):
    """Tags pushed before 0010 come through with pushed_by NULL (the pages show "—"); downgrading keeps the tags."""
    downgrade(database_url, revision="0009")
    engine = make_engine(database_url)
    when = {"when": "2026-01-01 00:00:00+00:00"}
    try:
        assert "pushed_by" not in {c["name"] for c in sa.inspect(engine).get_columns("tags")}
        with engine.begin() as conn:
            for statement in (
                "INSERT INTO repositories (id, name, created_at) VALUES (1, 'team/app', :when)",
                "INSERT INTO manifests (id, repository_id, digest, media_type, size, content, created_at) "
                "VALUES (1, 1, 'sha256:aa', 'application/vnd.oci.image.manifest.v1+json', 2, :content, :when)",
                "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (1, 'v1', 1, :when)",
            ):
                conn.execute(sa.text(statement), {**when, "content": b"{}"})
        engine.dispose()
        upgrade(database_url)
        engine = make_engine(database_url)
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("tags")}
        assert columns["pushed_by"]["nullable"] and columns["pushed_by"]["type"].length == 255
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("tags")}
        assert {"ix_tags_repository_id_updated_at", "ix_tags_updated_at"} <= indexes
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT name, pushed_by FROM tags")).all() == [("v1", None)]
            conn.execute(sa.text("UPDATE tags SET pushed_by = 'team+ci'"))
        engine.dispose()
        downgrade(database_url, revision="0009")
        engine = make_engine(database_url)
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT name FROM tags")).all() == [("v1",)]
        assert "pushed_by" not in {c["name"] for c in sa.inspect(engine).get_columns("tags")}
        upgrade(database_url)
    finally:
        engine.dispose()


def test_0011_adds_where_a_blob_is_and_existing_blobs_have_none(database_url):
    """Blobs recorded before 0011 have storage_key NULL (the store derives the place from the digest); downgrading
    keeps the blobs."""
    downgrade(database_url, revision="0010")
    engine = make_engine(database_url)
    try:
        assert "storage_key" not in {c["name"] for c in sa.inspect(engine).get_columns("blobs")}
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:aa', 2, :when)"),
                {"when": "2026-01-01 00:00:00+00:00"},
            )
        engine.dispose()
        upgrade(database_url)
        engine = make_engine(database_url)
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("blobs")}
        assert columns["storage_key"]["nullable"] and columns["storage_key"]["type"].length == 1024
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT digest, storage_key FROM blobs")).all() == [("sha256:aa", None)]
            conn.execute(sa.text("UPDATE blobs SET storage_key = 'objects/some-upload'"))
        engine.dispose()
        downgrade(database_url, revision="0010")
        engine = make_engine(database_url)
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT digest, size FROM blobs")).all() == [("sha256:aa", 2)]
        assert "storage_key" not in {c["name"] for c in sa.inspect(engine).get_columns("blobs")}
        upgrade(database_url)
    finally:
        engine.dispose()

"""Integration fixtures: the real app over the real schema (built by alembic) on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest
import sqlalchemy as sa
import transaction
import webtest

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction, make_engine, make_session_factory
from stevedore.adapters.sql.migrations import upgrade
from stevedore.adapters.token_keys import generate_signing_key_pem
from stevedore.domain.accounts import AccountService
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.services import (
    LiveRegistry,
    PostgresServer,
    WaitressProcess,
    free_port,
    stevedore_cli,
    write_ini,
)

SECRET = "integration-tests-secret-key-0123456789abcdef"
TOKEN_SIGNING_KEY = generate_signing_key_pem().decode()
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    server.start()
    try:
        engine = make_engine(server.url())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CREATE DATABASE stevedore_template")
        engine.dispose()
        upgrade(server.url("stevedore_template"))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, migrated database for one test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "stevedore.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_counter)}"
    admin = make_engine(server.url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE stevedore_template")
    yield server.url(name)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings.from_mapping(
        {
            "stevedore.database_url": database_url,
            "stevedore.storage_url": f"file://{tmp_path}/blobs",
            "stevedore.bcrypt_rounds": "4",
            "stevedore.blob_fsync": "false",
        },
        environ={"STEVEDORE_SECRET_KEY": SECRET, "STEVEDORE_TOKEN_SIGNING_KEYS": TOKEN_SIGNING_KEY},
    )


@pytest.fixture
def components(settings):
    components = build_components(settings)
    yield components
    components.engine.dispose()


@pytest.fixture
def app(components):
    return make_app(components)


@pytest.fixture
def testapp(app):
    return webtest.TestApp(app)


@pytest.fixture
def make_user(components):
    def make(username="alice", password="correct horse battery", *, admin=False, email=None):
        session = components.write_sessions()
        with transaction.manager:
            join_transaction(session)
            service = AccountService(SqlAccountStore(session), components.hasher, components.clock)
            account = service.create_account(username, password, email=email, is_admin=admin)
        session.close()
        return account

    return make


@pytest.fixture
def user(make_user):
    make_user("alice", "correct horse battery")
    return ("alice", "correct horse battery")


@pytest.fixture
def db(components):
    """A plain session on the test database, for asserting on what was stored."""
    session = make_session_factory(components.engine)()
    yield session
    session.close()


def count_rows(session: sa.orm.Session, table: sa.Table) -> int:
    session.rollback()
    return int(session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture(scope="session")
def stevedore_server(tmp_path_factory):
    """A real waitress process serving Stevedore on SQLite and a blob folder, with one user."""
    base = tmp_path_factory.mktemp("live")
    port = free_port()
    ini = str(base / "live.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/stevedore.sqlite", storage_dir=str(base / "blobs"), port=port)
    for args, stdin in (
        (("db", "upgrade"), None),
        (("user", "create", "pusher", "--password-stdin"), "push it real good\n"),
    ):
        result = stevedore_cli(ini, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
    server = WaitressProcess(ini, port, str(base / "server.log"))
    server.start()
    try:
        yield LiveRegistry(
            host=f"127.0.0.1:{port}",
            url=f"http://127.0.0.1:{port}",
            username="pusher",
            password="push it real good",
            ini_path=ini,
        )
    finally:
        server.stop()

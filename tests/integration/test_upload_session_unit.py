"""Where an upload's session row is written when its first bytes arrive (web/app.py's _upload_session_unit): in a
short transaction of its own, committed before the bytes; or, should the request's own transaction have begun
already, in that one (a second writer would wait for the request's own)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import sqlalchemy as sa

from stevedore.adapters.sql.tables import uploads
from stevedore.domain.model import RepositoryName
from stevedore.domain.registry import UploadSession
from stevedore.web.app import _upload_session_unit

SESSION = "8f0e8d6c-51a2-4d4e-9a35-0d3c7b1e2f10"


def upload() -> UploadSession:
    return UploadSession(SESSION, RepositoryName.parse("team/app"), None, "sha256", datetime.now(UTC))


def rows(components) -> list[str]:
    with components.engine.connect() as connection:
        return list(connection.execute(sa.select(uploads.c.id)).scalars())


def test_the_row_is_committed_in_a_transaction_of_its_own_when_the_block_ends(components):
    request = SimpleNamespace(registry=SimpleNamespace(stevedore=components))  # its transaction never began
    with _upload_session_unit(request) as store:
        assert store.add_upload(upload())
    assert rows(components) == [SESSION]  # committed, seen from another connection


def test_inside_the_request_s_own_transaction_the_row_goes_into_it(components):
    session = components.write_sessions()
    try:
        session.execute(sa.select(uploads.c.id))  # the request's transaction has begun (on SQLite: the write lock)
        request = SimpleNamespace(dbsession=session, registry=SimpleNamespace(stevedore=components))
        with _upload_session_unit(request) as store:  # no second writer: no wait for this one's own lock
            assert store.add_upload(upload())
        assert session.execute(sa.select(uploads.c.id)).scalars().all() == [SESSION]
        session.rollback()  # the request's transaction decides
    finally:
        session.close()
    assert rows(components) == []

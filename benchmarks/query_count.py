"""SQL statements per small push: POST + monolithic PUT + HEAD of a 1000-byte blob, with cached Basic credentials,
through the real app (webtest) on SQLite. A cheap, deterministic companion to `benchmarks.throughput`: request
rates are noisy here, statement counts are not.

    .venv/bin/python -m benchmarks.query_count
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile

import transaction
import webtest
from sqlalchemy import event

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.migrations import upgrade
from stevedore.adapters.token_keys import generate_signing_key_pem
from stevedore.domain.accounts import AccountService
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings

ROUNDS = 10


def main() -> None:
    folder = tempfile.mkdtemp(prefix="stevedore-query-count-")
    url = f"sqlite:///{folder}/db.sqlite"
    upgrade(url)
    settings = Settings.from_mapping(
        {
            "stevedore.database_url": url,
            "stevedore.storage_url": f"file://{folder}/blobs",
            "stevedore.bcrypt_rounds": "4",
            "stevedore.blob_fsync": "false",
        },
        environ={"STEVEDORE_SECRET_KEY": "x" * 40, "STEVEDORE_TOKEN_SIGNING_KEYS": generate_signing_key_pem().decode()},
    )
    components = build_components(settings)
    app = webtest.TestApp(make_app(components))
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        AccountService(SqlAccountStore(session), components.hasher, components.clock).create_account(
            "bencher", "a fine password"
        )
    auth = {"Authorization": "Basic " + base64.b64encode(b"bencher:a fine password").decode()}
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    event.listen(components.engine, "before_cursor_execute", count)

    def push_and_head() -> None:
        data = os.urandom(1000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = app.post("/v2/bench/small/blobs/uploads/", headers=auth, status=202)
        location = started.headers["Location"].replace("http://localhost", "")
        separator = "&" if "?" in location else "?"
        app.put(f"{location}{separator}digest={digest}", params=data, headers=auth, status=201)
        app.head(f"/v2/bench/small/blobs/{digest}", headers=auth, status=200)

    push_and_head()  # the first push claims the namespace and fills the credential cache
    statements[0] = 0
    for _ in range(ROUNDS):
        push_and_head()
    print(f"SQL statements per small push (POST + PUT) and HEAD: {statements[0] / ROUNDS:.1f}")
    components.engine.dispose()


if __name__ == "__main__":
    main()

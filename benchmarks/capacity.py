"""The capacity model's measurements: database statements and S3 requests per push and per pull, for a small image
and for a large layer, through the real app (webtest) on PostgreSQL and an S3 bucket (moto's S3 server, a real HTTP
endpoint), as one node of a production setup runs them.

    .venv/bin/python -m benchmarks.capacity

Run from the repository root with the venv's Python: it starts PostgreSQL (Debian's packages) and moto_server with
the integration tests' helpers (`tests/integration/services.py`, `tests/integration/s3/moto_server.py`). Statements
are counted with SQLAlchemy's `before_cursor_execute` (as `benchmarks.query_count`), S3 requests with botocore's
`before-call` event on the app's client (each API call once; retries not counted), plus the GETs a client sends to
S3 itself when a blob GET answers 307 to a presigned URL. Pushes go as docker sends them: HEAD each blob (404),
POST, one PATCH with the whole blob, PUT ?digest=, then the manifest PUT; pulls: GET the manifest, GET each blob
(following the redirect). Basic credentials on every request, with the credential cache warm (as after docker's
token fetch); token requests are not counted.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import urllib.request
from collections.abc import Callable
from typing import Any

import transaction
import webtest
from sqlalchemy import event
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS, MotoServer
from tests.integration.services import PostgresServer

from stevedore.adapters.blobs_s3 import S3BlobStore
from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction, make_engine
from stevedore.adapters.sql.migrations import upgrade
from stevedore.adapters.token_keys import generate_signing_key_pem
from stevedore.domain.accounts import AccountService
from stevedore.web.app import build_blob_store, build_components, make_app
from stevedore.web.settings import Settings

MiB = 1024 * 1024
PART_SIZE_MIB = 16  # the default stevedore.s3_part_size_mib
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"capacity:a fine password").decode()}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_for(config: bytes, layers: list[bytes]) -> bytes:
    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": digest(data), "size": len(data)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer) for layer in layers],
        }
    ).encode()


class Counters:
    def __init__(self) -> None:
        self.statements = 0
        self.s3: collections.Counter[str] = collections.Counter()
        self.client_s3_gets = 0

    def reset(self) -> None:
        self.statements, self.s3, self.client_s3_gets = 0, collections.Counter(), 0

    def snapshot(self) -> tuple[int, int, int, str]:
        s3 = sum(self.s3.values()) + self.client_s3_gets  # the app's calls and the clients' own GETs
        detail = ", ".join(f"{name} {count}" for name, count in sorted(self.s3.items()))
        if self.client_s3_gets:
            detail += f"{', ' if detail else ''}client GET (presigned) {self.client_s3_gets}"
        return self.statements, s3, self.client_s3_gets, detail


def path_of(location: str) -> str:
    return "/" + location.split("://", 1)[1].split("/", 1)[1] if "://" in location else location


def push(app: webtest.TestApp, repository: str, config: bytes, layers: list[bytes]) -> None:
    for blob in [*layers, config]:
        app.head(f"/v2/{repository}/blobs/{digest(blob)}", headers=AUTH, status=404)
        started = app.post(f"/v2/{repository}/blobs/uploads/", headers=AUTH, status=202)
        patched = app.patch(
            path_of(started.headers["Location"]),
            params=blob,
            headers={**AUTH, "Content-Type": "application/octet-stream"},
            status=202,
        )
        location = path_of(patched.headers["Location"])
        app.put(f"{location}{'&' if '?' in location else '?'}digest={digest(blob)}", headers=AUTH, status=201)
    app.put(f"/v2/{repository}/manifests/v1", params=manifest_for(config, layers), headers=AUTH, content_type=MANIFEST)


def pull(app: webtest.TestApp, repository: str, counters: Counters) -> None:
    document = app.get(f"/v2/{repository}/manifests/v1", headers={**AUTH, "Accept": MANIFEST}, status=200).json
    for descriptor in [*document["layers"], document["config"]]:
        response = app.get(f"/v2/{repository}/blobs/{descriptor['digest']}", headers=AUTH)
        if response.status_int == 307:
            counters.client_s3_gets += 1
            with urllib.request.urlopen(response.headers["Location"], timeout=120) as redirected:
                body = redirected.read()
        else:
            assert response.status_int == 200, response.status
            body = response.body
        assert digest(body) == descriptor["digest"]


def measure(label: str, counters: Counters, action: Callable[[], None]) -> tuple[str, int, int, int, str]:
    counters.reset()
    action()
    return (label, *counters.snapshot())


def main() -> None:
    postgres, moto = PostgresServer(), MotoServer()
    postgres.start()
    moto.start()
    components = None
    try:
        admin = make_engine(postgres.url())
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CREATE DATABASE capacity")
        admin.dispose()
        upgrade(postgres.url("capacity"))
        bucket = moto.new_bucket()
        settings = Settings.from_mapping(
            {
                "stevedore.database_url": postgres.url("capacity"),
                "stevedore.storage_url": f"s3://{bucket}/registry",
                "stevedore.s3_endpoint_url": moto.endpoint_url,
                "stevedore.s3_part_size_mib": str(PART_SIZE_MIB),
                "stevedore.s3_region": "us-east-1",
                "stevedore.s3_addressing": "path",
                "stevedore.bcrypt_rounds": "4",
            },
            environ={
                "STEVEDORE_SECRET_KEY": "c" * 48,
                "STEVEDORE_TOKEN_SIGNING_KEYS": generate_signing_key_pem().decode(),
            },
        )
        # The store as a node builds it (pulls answer 307 to presigned URLs, the default), with moto's dummy
        # credentials through boto3's default chain.
        os.environ.update(DUMMY_CREDENTIALS)
        store = build_blob_store(settings)
        assert isinstance(store, S3BlobStore)
        components = build_components(settings, blob_store=store)
        app = webtest.TestApp(make_app(components))
        session = components.write_sessions()
        with transaction.manager:
            join_transaction(session)
            AccountService(SqlAccountStore(session), components.hasher, components.clock).create_account(
                "capacity", "a fine password"
            )
        session.close()
        counters = Counters()

        def count_statement(*_args: object) -> None:
            counters.statements += 1

        def count_s3(model: Any, **_kwargs: Any) -> None:
            counters.s3[model.name] += 1

        event.listen(components.engine, "before_cursor_execute", count_statement)
        store.client.meta.events.register("before-call.s3", count_s3)

        # Warm-up: the first push claims the namespace and fills the credential cache.
        push(app, "capacity/warmup", b'{"warm": 1}', [os.urandom(1000)])
        small_layers = [os.urandom(64 * 1024)]
        large_layers = [os.urandom(64 * MiB)]
        rows = [
            measure("small image push (64 KiB layer + config)", counters,
                    lambda: push(app, "capacity/small", b'{"small": 1}', small_layers)),
            measure("small image pull", counters, lambda: pull(app, "capacity/small", counters)),
            measure(f"large layer push (64 MiB, {PART_SIZE_MIB} MiB parts)", counters,
                    lambda: push(app, "capacity/large", b'{"large": 1}', large_layers)),
            measure("large layer pull", counters, lambda: pull(app, "capacity/large", counters)),
            measure("re-push of the small image (all blobs known)", counters,
                    lambda: push_known(app, "capacity/small", b'{"small": 1}', small_layers)),
        ]  # fmt: skip
        width = max(len(row[0]) for row in rows)
        print(f"{'operation'.ljust(width)} | SQL statements | S3 requests | S3 requests by operation (app, clients)")
        print(f"{'-' * width}-+----------------+-------------+-------------------------")
        for label, statements, s3, _client, detail in rows:
            print(f"{label.ljust(width)} | {statements:>14} | {s3:>11} | {detail}")
    finally:
        if components is not None:
            components.engine.dispose()
        moto.stop()
        postgres.stop()


def push_known(app: webtest.TestApp, repository: str, config: bytes, layers: list[bytes]) -> None:
    """docker's re-push: every HEAD answers 200, so only the manifest is sent again."""
    for blob in [*layers, config]:
        app.head(f"/v2/{repository}/blobs/{digest(blob)}", headers=AUTH, status=200)
    app.put(f"/v2/{repository}/manifests/v1", params=manifest_for(config, layers), headers=AUTH, content_type=MANIFEST)


if __name__ == "__main__":
    main()

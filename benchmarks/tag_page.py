"""A repository with 10,000 tags: how long its tags page takes to render, first page and deep ones, sorted by name
and by date, and how many SQL statements each render runs, through the real app (webtest, logged in with a page
session) on SQLite, or on PostgreSQL with `--database-url`.

    .venv/bin/python -m benchmarks.tag_page
    .venv/bin/python -m benchmarks.tag_page --database-url postgresql://user@host:port/empty_database

The tags are written directly through the SQL store (SqlRegistryStore.tag_manifest, as a push writes them) onto
a few pushed manifests: plain images and a two-platform index, so every page reads sizes, platforms and pushers.
Then every page is walked by its Next link in both orders (checking that each tag shows exactly once), and back by
Previous from the last page; each render is timed and its statements counted.
"""

from __future__ import annotations

import argparse
import base64
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import transaction
import webtest
from sqlalchemy import event
from tests.integration.protocol.helpers import index_manifest, push_image, put_manifest
from tests.integration.web.helpers import log_in

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.migrations import upgrade
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.token_keys import generate_signing_key_pem
from stevedore.domain.accounts import AccountService
from stevedore.domain.model import Digest, RepositoryName, Tag
from stevedore.web.app import Components, build_components, make_app
from stevedore.web.settings import Settings

USER = ("bencher", "a fine password")
_NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
_PREV = re.compile(r'<a rel="prev" href="([^"]+)"')
_TAG = re.compile(r'<h3 class="tag-name">([^<]*)</h3>')


def build(database_url: str | None, folder: str) -> tuple[Components, webtest.TestApp]:
    url = database_url or f"sqlite:///{folder}/db.sqlite"
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
    return components, webtest.TestApp(make_app(components))


def fill(components: Components, app: webtest.TestApp, repository: str, count: int) -> float:
    """Push a few manifests, then write `count` tags onto them through the SQL store; the seconds the tags took."""
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        AccountService(SqlAccountStore(session), components.hasher, components.clock).create_account(*USER)
    auth = {"Authorization": "Basic " + base64.b64encode(":".join(USER).encode()).decode()}
    amd = push_image(app, auth, repository, None, seed="amd64")
    arm = push_image(app, auth, repository, None, seed="arm64", layer_count=3)
    plain = push_image(app, auth, repository, None, seed="plain")
    index = index_manifest(
        [
            amd.descriptor(platform={"os": "linux", "architecture": "amd64"}),
            arm.descriptor(platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ]
    )
    index_digest = put_manifest(app, auth, repository, "multi", index, "application/vnd.oci.image.index.v1+json")
    targets = [Digest.parse(index_digest.headers["Docker-Content-Digest"])] + [
        Digest.parse(p.digest) for p in (amd, arm, plain)
    ]
    name = RepositoryName.parse(repository)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        store = SqlRegistryStore(session)
        for i in range(count - 1):  # `multi` is one of them
            # every fifth tag shares its time with the one before: ties in the date order
            when = start + timedelta(seconds=i - i // 5)
            pusher = ("bencher", "team+ci", None)[i % 3]
            store.tag_manifest(name, Tag(f"v{i:05d}"), targets[i % len(targets)], when, pusher)
    return time.perf_counter() - started


def walk(app: webtest.TestApp, engine: Any, first: str, count: int) -> dict[str, object]:
    statements = [0]

    def counted(*_args: object) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", counted)
    try:

        def render(path: str) -> tuple[str, float, int]:
            statements[0] = 0
            started = time.perf_counter()
            text = app.get(path, status=200).text
            return text, time.perf_counter() - started, statements[0]

        times: list[float] = []
        counts: list[int] = []
        seen: list[str] = []
        path: str | None = first
        text = ""
        while path is not None:
            text, seconds, n = render(path)
            times.append(seconds)
            counts.append(n)
            seen += [unescape(t) for t in _TAG.findall(text)]
            found = _NEXT.search(text)
            path = unescape(found.group(1)) if found else None
        assert len(seen) == count and len(set(seen)) == count, (len(seen), len(set(seen)))
        back_times: list[float] = []
        for _ in range(3):  # three pages back by Previous from the last one
            found = _PREV.search(text)
            assert found, "no Previous link"
            text, seconds, n = render(unescape(found.group(1)))
            back_times.append(seconds)
            counts.append(n)
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    return {
        "pages": len(times),
        "first": times[0],
        "median": statistics.median(times),
        "deepest": times[-1],
        "max": max(times),
        "back": statistics.median(back_times),
        "statements": (min(counts), max(counts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="an empty PostgreSQL (or SQLite) database; default a temporary SQLite")
    parser.add_argument("--tags", type=int, default=10_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="stevedore-tag-page-")
    components, app = build(args.database_url, folder)
    repository = "bench/tags"
    seconds = fill(components, app, repository, args.tags)
    backend = components.engine.dialect.name
    print(f"{backend}: {args.tags} tags written through SqlRegistryStore.tag_manifest in {seconds:.1f} s")
    log_in(app, *USER)
    app.get(f"/r/{repository}")  # warm-up: templates compiled, the session's last-seen write done
    print("sort | pages | first page | median page | deepest page | slowest | Previous | SQL statements per page")
    for sort in ("name", "date"):
        result = walk(app, components.engine, f"/r/{repository}?sort={sort}", args.tags)
        low, high = result["statements"]
        print(
            f"{sort:4} | {result['pages']:5} | {result['first'] * 1000:7.1f} ms | {result['median'] * 1000:8.1f} ms"
            f" | {result['deepest'] * 1000:9.1f} ms | {result['max'] * 1000:5.1f} ms"
            f" | {result['back'] * 1000:5.1f} ms | {low}" + (f"-{high}" if high != low else "")
        )
    components.engine.dispose()


if __name__ == "__main__":
    main()

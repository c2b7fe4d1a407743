"""Garbage collection at object-storage scale: N unreferenced blobs on moto's S3 server, one `GarbageCollector.collect`
timed, objects per minute printed. Run by hand (not in the tests), from the repository root:

    .venv/bin/python -m benchmarks.gc_scale [--count 10000] [--threads 8] [--database-url URL]

Set-up (not timed): a migrated SQLite database in a temporary folder (or --database-url, an empty PostgreSQL database
it migrates), N objects at `objects/<id>` under the store's prefix, put by 32 threads, and N blob rows pointing at
them, recorded two days ago, linked nowhere. Timed: what `stevedore gc --grace-period 24h` runs for the blobs — the
indexed candidate pages, the rows' deletion under locks in batches of 1,000 x threads, DeleteObjects of 1,000 keys a
request, `--threads` requests at once. Afterwards the bucket (listed only to check) and the table must be empty.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from tests.integration.s3.moto_server import MotoServer

from stevedore.adapters.blobs_s3 import DELETE_BATCH
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.gc import garbage_units
from stevedore.adapters.sql.migrations import upgrade
from stevedore.adapters.sql.tables import blobs
from stevedore.domain.gc import DEFAULT_BATCH, GarbageCollector, GcProgress
from stevedore.domain.model import Digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="unreferenced blobs (default 10,000)")
    parser.add_argument("--threads", type=int, default=8, help="DeleteObjects requests at once (default 8)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per object (default 1 KiB)")
    parser.add_argument("--database-url", help="an empty database to migrate and use (default: a SQLite file)")
    args = parser.parse_args(argv)

    server = MotoServer()
    server.start()
    workdir = tempfile.mkdtemp(prefix="stevedore-gc-bench-")
    database_url = args.database_url or f"sqlite:///{workdir}/gc.sqlite"
    try:
        upgrade(database_url)
        bucket = server.new_bucket()
        store = server.store(bucket)
        store.delete_threads = args.threads
        print(f"putting {args.count} objects of {args.size} bytes into {bucket} on moto ...", file=sys.stderr)
        rows = []
        created = datetime.now(UTC) - timedelta(days=2)
        for _ in range(args.count):
            data = os.urandom(args.size)
            rows.append(
                {
                    "digest": str(Digest.of(data)),
                    "size": len(data),
                    "created_at": created,
                    "storage_key": f"objects/{uuid.uuid4()}",
                    "data": data,
                }
            )
        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            list(
                pool.map(
                    lambda row: store.client.put_object(
                        Bucket=bucket, Key=store.prefix + row["storage_key"], Body=row["data"]
                    ),
                    rows,
                )
            )
        print(f"  put in {time.monotonic() - started:.0f} s", file=sys.stderr)
        engine = make_engine(database_url)
        with engine.begin() as connection:
            for start in range(0, len(rows), 1000):
                connection.execute(
                    sa.insert(blobs),
                    [{k: v for k, v in row.items() if k != "data"} for row in rows[start : start + 1000]],
                )

        reads, writes = garbage_units(engine)
        collector = GarbageCollector(reads, writes, store, SystemClock(), batch=DEFAULT_BATCH * args.threads)

        def progress(totals: GcProgress) -> None:
            print(
                f"  {totals.collected} collected, {totals.per_minute:,.0f} objects/min, {totals.seconds:.1f} s",
                file=sys.stderr,
            )

        result = collector.collect(timedelta(hours=24), progress=progress)
        with engine.connect() as connection:
            left_rows = connection.execute(sa.select(sa.func.count()).select_from(blobs)).scalar_one()
        left_objects = sum(
            page.get("KeyCount", 0)
            for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=store.prefix)
        )
        engine.dispose()
        dialect = sa.engine.make_url(database_url).get_backend_name()
        print(
            f"gc of {args.count} unreferenced blobs on moto_server ({dialect}, {args.threads} DeleteObjects threads, "
            f"{DELETE_BATCH} keys a request): {result.objects} deleted, {len(result.failed)} failed, "
            f"in {result.seconds:.2f} s = {result.per_minute:,.0f} objects/min; left: {left_rows} rows, "
            f"{left_objects} objects"
        )
        return 0 if left_rows == 0 and left_objects == 0 and not result.failed else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

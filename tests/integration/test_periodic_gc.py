"""`stevedore.gc_interval`: the app runs `stevedore gc` by itself, one node at a time. The leases on SQLite and
PostgreSQL (of many asking at once, one gets the job), then two real `pserve` nodes of two workers each over one
database: an unreferenced blob is collected with no command run by hand, by exactly one of the four processes.
No timing is asserted: waits are polling loops with generous bounds."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.job_leases import SqlJobLeases, SqlJobLeaseUnits
from stevedore.adapters.sql.tables import blobs
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_jobs import job_leases
from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini
from tests.integration.test_server import Client

WAIT = 60.0  # seconds: a bound for polling loops, never a measurement
USER, PASSWORD = "sweeper", "collect me periodically"


def test_of_many_processes_asking_at_once_one_takes_the_job(components):
    leases = SqlJobLeaseUnits(components.write_sessions)
    now = datetime.now(UTC)
    start = threading.Barrier(6)
    taken: list[str] = []

    def ask(holder: str) -> None:
        start.wait()
        if leases.acquire("gc", holder, now, now - timedelta(hours=1), now + timedelta(minutes=5)):
            taken.append(holder)

    askers = [threading.Thread(target=ask, args=(f"node{n}",)) for n in range(6)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(timeout=60)
    assert len(taken) == 1
    holder = taken[0]
    later = now + timedelta(minutes=10)  # the lease ran out, but the job is not due again for an hour
    assert not leases.acquire("gc", "late", later, later - timedelta(hours=1), later + timedelta(minutes=5))
    assert not leases.renew("gc", "late", later)
    leases.release("gc", holder, now + timedelta(minutes=1), "deleted 3 unreferenced blobs")
    with components.read_sessions() as session:
        started, finished, outcome = SqlJobLeases(session).last_run("gc") or (None, None, None)
    assert started is not None and finished is not None and outcome == "deleted 3 unreferenced blobs"
    due = now + timedelta(hours=1)
    assert leases.acquire("gc", "next", due, due - timedelta(hours=1), due + timedelta(minutes=5))


def test_a_lease_whose_holder_died_is_taken_over_when_it_expires(components):
    leases = SqlJobLeaseUnits(components.write_sessions)
    now = datetime.now(UTC)
    assert leases.acquire("gc", "dead", now, now, now + timedelta(minutes=5))
    soon = now + timedelta(minutes=4)
    assert not leases.acquire("gc", "alive", soon, soon, soon + timedelta(minutes=5))
    expired = now + timedelta(minutes=5)
    assert leases.acquire("gc", "alive", expired, expired, expired + timedelta(minutes=5))
    leases.release("gc", "dead", expired, "too late")  # the dead holder's release changes nothing
    with components.read_sessions() as session:
        assert session.execute(sa.select(job_leases.c.holder)).scalar_one() == "alive"


def request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=Client("", USER, PASSWORD).auth)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def poll(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {WAIT:.0f} s")


@pytest.mark.server
def test_the_app_collects_garbage_by_itself_on_one_node_at_a_time(tmp_path):
    database_url = f"sqlite:///{tmp_path}/db.sqlite"
    extra = "stevedore.gc_interval = 1h\nstevedore.gc_grace_period = 0s"
    inis, ports = [], []
    for number in range(3):  # node 0 only sets up: it runs no gc
        ini, port = str(tmp_path / f"node{number}.ini"), free_port()
        write_ini(
            ini,
            database_url=database_url,
            storage_dir=str(tmp_path / "blobs"),
            port=port,
            extra=extra if number else "",
            server_extra="workers = 2",
        )
        with open(ini) as handle:  # the runs' outcome lines are logged at INFO
            text = handle.read().replace("[logger_root]\nlevel = WARN", "[logger_root]\nlevel = INFO")
        with open(ini, "w") as handle:
            handle.write(text)
        inis.append(ini)
        ports.append(port)
    assert stevedore_cli(inis[0], "db", "upgrade").returncode == 0
    created = stevedore_cli(inis[0], "user", "create", USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert created.returncode == 0, created.stderr

    # An unreferenced blob, recorded before either node starts (so the first look of any process finds it).
    data = os.urandom(4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    servers = [WaitressProcess(inis[0], ports[0], str(tmp_path / "setup.log"))]
    servers[0].start()
    try:
        assert request(ports[0], "POST", f"/v2/{USER}/app/blobs/uploads/?digest={digest}", data) == 201
        assert request(ports[0], "DELETE", f"/v2/{USER}/app/blobs/{digest}") == 202
    finally:
        servers[0].stop()
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.update(blobs).values(created_at=datetime.now(UTC) - timedelta(days=1)))
        nodes = [WaitressProcess(inis[n], ports[n], str(tmp_path / f"node{n}.log")) for n in (1, 2)]
        for node in nodes:
            node.start()
        try:

            def collected() -> bool:
                with engine.connect() as connection:
                    gone = connection.execute(sa.select(blobs.c.digest).where(blobs.c.digest == digest)).first() is None
                    finished = connection.execute(sa.select(job_leases.c.last_finished_at)).scalar_one_or_none()
                return gone and finished is not None

            poll(collected, "periodic gc run")
            time.sleep(8)  # every process has had its first look (within 5 s of starting) meanwhile
            with engine.connect() as connection:
                outcome = connection.execute(sa.select(job_leases.c.last_outcome)).scalar_one()
                events = connection.execute(
                    sa.select(audit_events.c.detail).where(audit_events.c.action == "garbage_collected")
                ).all()
            assert "deleted 1 unreferenced blob" in outcome
            assert len(events) == 1, events
            runs = [
                line
                for n in (1, 2)
                for line in (tmp_path / f"node{n}.log").read_text().splitlines()
                if "[stevedore.domain.periodic] periodic gc:" in line
            ]
            assert len(runs) == 1, runs  # one run, by one of the four processes
            assert not os.path.exists(tmp_path / "blobs" / "blobs" / "sha256" / digest[7:9] / digest[7:])
        finally:
            for node in nodes:
                node.stop()
    finally:
        engine.dispose()

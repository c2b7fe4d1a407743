"""The periodic job (domain/periodic.py) over an in-memory lease store with the same rules as the SQL one."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from stevedore.domain.periodic import PeriodicJob, Schedule
from tests.fakes import FixedClock


@dataclass
class Row:
    holder: str | None = None
    lease_until: datetime | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_outcome: str | None = None


class MemoryJobLeases:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.lock = threading.Lock()
        self.renewals = 0

    def acquire(self, job: str, holder: str, now: datetime, due_before: datetime, lease_until: datetime) -> bool:
        with self.lock:
            row = self.rows.setdefault(job, Row())
            if row.lease_until is not None and row.lease_until > now:
                return False
            if row.last_started_at is not None and row.last_started_at > due_before:
                return False
            row.holder, row.lease_until, row.last_started_at = holder, lease_until, now
            return True

    def renew(self, job: str, holder: str, lease_until: datetime) -> bool:
        with self.lock:
            row = self.rows[job]
            if row.holder != holder:
                return False
            row.lease_until = lease_until
            self.renewals += 1
            return True

    def release(self, job: str, holder: str, now: datetime, outcome: str) -> None:
        with self.lock:
            row = self.rows[job]
            if row.holder == holder:
                row.holder, row.lease_until, row.last_finished_at, row.last_outcome = None, None, now, outcome


HOUR = Schedule(interval=timedelta(hours=1))


def job_of(leases: MemoryJobLeases, clock: FixedClock, holder: str, runs: list[str], schedule: Schedule = HOUR):
    def job() -> str:
        runs.append(holder)
        return f"ran by {holder}"

    return PeriodicJob("gc", job, leases, clock, schedule, holder)


def test_a_job_never_run_is_due_and_runs_once_per_interval():
    leases, clock, runs = MemoryJobLeases(), FixedClock(), []
    job = job_of(leases, clock, "a", runs)
    assert job.run_once() == "ran by a"
    assert leases.rows["gc"].last_outcome == "ran by a"
    assert leases.rows["gc"].holder is None and leases.rows["gc"].lease_until is None
    clock.advance(minutes=59)
    assert job.run_once() is None
    clock.advance(minutes=1)
    assert job.run_once() == "ran by a"
    assert runs == ["a", "a"]


def test_of_several_processes_one_runs_the_job_per_interval():
    leases, clock, runs = MemoryJobLeases(), FixedClock(), []
    jobs = [job_of(leases, clock, name, runs) for name in ("a", "b", "c")]
    for _round in range(3):
        outcomes = [job.run_once() for job in jobs]
        assert sum(outcome is not None for outcome in outcomes) == 1
        clock.advance(hours=1)
    assert len(runs) == 3


def test_a_held_lease_keeps_others_out_until_it_expires():
    leases, clock = MemoryJobLeases(), FixedClock()
    now = clock.now()
    assert leases.acquire("gc", "dead", now, now, now + timedelta(minutes=5))  # a holder that died mid-run
    runs: list[str] = []
    job = job_of(leases, clock, "b", runs, Schedule(interval=timedelta(seconds=1)))
    clock.advance(minutes=4)
    assert job.run_once() is None
    clock.advance(minutes=1)
    assert job.run_once() == "ran by b"


def test_a_failing_job_releases_the_lease_and_records_the_failure():
    leases, clock = MemoryJobLeases(), FixedClock()

    def job() -> str:
        raise RuntimeError("the bucket is gone")

    outcome = PeriodicJob("gc", job, leases, clock, HOUR, "a").run_once()
    assert outcome == "failed: RuntimeError: the bucket is gone"
    row = leases.rows["gc"]
    assert row.holder is None and row.last_outcome == outcome
    clock.advance(minutes=30)
    assert PeriodicJob("gc", lambda: "ok", leases, clock, HOUR, "b").run_once() is None  # it ran: not due again yet


def test_a_long_job_renews_its_lease():
    leases, clock = MemoryJobLeases(), FixedClock()
    schedule = Schedule(interval=timedelta(hours=1), lease=timedelta(seconds=0.15))

    def slow() -> str:
        time.sleep(0.5)
        return "done"

    assert PeriodicJob("gc", slow, leases, clock, schedule, "a").run_once() == "done"
    assert leases.renewals >= 2


def test_run_forever_looks_soon_then_stops_when_told():
    leases, clock, runs = MemoryJobLeases(), FixedClock(), []
    schedule = Schedule(interval=timedelta(hours=1), poll=timedelta(seconds=0.05), first_look=timedelta(seconds=0.05))
    job = job_of(leases, clock, "a", runs, schedule)
    stop = threading.Event()
    looper = threading.Thread(target=job.run_forever, args=(stop,))
    looper.start()
    deadline = time.monotonic() + 5
    while not runs and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    looper.join(timeout=5)
    assert runs == ["a"]  # once: the clock stands still, so it is never due again
    assert not looper.is_alive()


@pytest.mark.parametrize("failure", [RuntimeError("database down")])
def test_run_forever_survives_a_lease_store_that_fails(failure):
    class Down(MemoryJobLeases):
        calls = 0

        def acquire(self, *args: object) -> bool:  # type: ignore[override]
            Down.calls += 1
            raise failure

    schedule = Schedule(interval=timedelta(hours=1), poll=timedelta(seconds=0.02), first_look=timedelta(seconds=0.02))
    job = PeriodicJob("gc", lambda: "ok", Down(), FixedClock(), schedule, "a")
    stop = threading.Event()
    looper = threading.Thread(target=job.run_forever, args=(stop,))
    looper.start()
    deadline = time.monotonic() + 5
    while Down.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    looper.join(timeout=5)
    assert Down.calls >= 3


def test_the_gc_command_runs_with_a_weekly_interval(tmp_path):
    """A timeout of four weeks would be refused by subprocess's poll (over 2**31 ms): capped at a week."""
    from stevedore.web.periodic_gc import MAX_RUN_SECONDS, periodic_gc_task, run_gc_command, run_timeout_seconds

    for interval in (60, 86400, 7 * 86400, 30 * 86400):
        assert run_gc_command(["sh", "-c", "echo done"], run_timeout_seconds(interval)) == "done"

    assert run_gc_command(["sh", "-c", "echo abandoned uploads: none; echo deleted 2 blobs"], MAX_RUN_SECONDS) == (
        "deleted 2 blobs"
    )
    assert run_gc_command(["sh", "-c", "echo deleted 0; echo oops >&2; exit 1"], MAX_RUN_SECONDS) == (
        "failed (exit 1): oops"
    )
    assert run_gc_command(["sh", "-c", "echo deleted 1 blob; echo a warning >&2"], MAX_RUN_SECONDS) == "deleted 1 blob"
    assert callable(periodic_gc_task(None, FixedClock(), 7 * 86400, str(tmp_path / "x.ini")))  # type: ignore[arg-type]

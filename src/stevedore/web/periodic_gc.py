"""Web layer: `stevedore.gc_interval` — the app runs `stevedore gc` itself every so often, on one node at a time.

Every serving process looks about once a minute whether the run is due (domain/periodic.py); the one that takes the
lease in the database runs the command line's `gc` (retention, the upload sweep, the blobs) as a child process, with
the same ini file and environment. A child process, not a thread: a long collection neither competes with the
requests for this process's interpreter nor takes the server down if it fails, and it is the same code, output and
audit event as a run from cron. Its output goes to this process's log."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from stevedore.adapters.sql.job_leases import SqlJobLeaseUnits
from stevedore.domain.periodic import PeriodicJob, Schedule
from stevedore.domain.ports import Clock

log = logging.getLogger(__name__)

JOB = "gc"
# Set for the child: its runs are recorded as periodic ones, and it ends if the worker that started it does.
TRIGGER_VARIABLE = "STEVEDORE_GC_TRIGGER"
PARENT_VARIABLE = "STEVEDORE_GC_PARENT"
MAX_RUN_SECONDS = 7 * 86400


def gc_command(ini_path: str) -> list[str]:
    return [sys.executable, "-m", "stevedore.cli", "--config", ini_path, "gc"]


def run_gc_command(command: list[str], timeout_seconds: float) -> str:
    """Run the command; its output lines go to the log; its last line (gc's summary) is the outcome."""
    env = {**os.environ, TRIGGER_VARIABLE: "periodic", PARENT_VARIABLE: str(os.getpid())}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_seconds, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"failed: still running after {timeout_seconds:.0f} s, stopped"
    out = [line for line in done.stdout.splitlines() if line.strip()]
    err = [line for line in done.stderr.splitlines() if line.strip()]
    for line in out:
        log.info("periodic gc: %s", line)
    for line in err:
        log.warning("periodic gc: %s", line)
    if done.returncode == 0:
        return out[-1] if out else "(no output)"  # gc's summary
    last = (err or out or ["(no output)"])[-1]  # the error, said last
    return f"failed (exit {done.returncode}): {last}"


def run_timeout_seconds(interval_seconds: int) -> int:
    """A run that hangs must not hold the lease for ever; a long one (millions of objects) must not be cut short.
    At most a week: a wait longer than 2**31 ms (24.8 days) is refused by the poll under subprocess's timeout."""
    return min(max(4 * interval_seconds, 3600), MAX_RUN_SECONDS)


def periodic_gc_task(
    sessions: sessionmaker[Session],
    clock: Clock,
    interval_seconds: int,
    ini_path: str,
    stop: threading.Event | None = None,
) -> Callable[[], None]:
    """The background task (Components.background_tasks) of one serving process."""
    schedule = Schedule(interval=timedelta(seconds=interval_seconds), poll=timedelta(seconds=min(60, interval_seconds)))
    command = gc_command(ini_path)
    timeout = run_timeout_seconds(interval_seconds)

    def periodic_gc() -> None:
        job = PeriodicJob(
            JOB,
            lambda: run_gc_command(command, timeout_seconds=timeout),
            SqlJobLeaseUnits(sessions),
            clock,
            schedule,
            holder=f"{socket.gethostname()}:{os.getpid()}",  # this worker's, after the fork
        )
        job.run_forever(stop)

    return periodic_gc

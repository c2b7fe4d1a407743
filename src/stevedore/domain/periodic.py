"""Use case: a job that runs every so often on one node at a time (the periodic `gc`), whichever of the installation's
processes and nodes get there first. Pure: the lease store, the clock and the job are handed in.

One row per job in the database says when it last started and who holds it until when (a lease). A process takes the
job only if it is due (started longer ago than the interval, or never) and nobody holds an unexpired lease, in one
conditional write, so of several processes asking at once exactly one gets it. The holder renews its lease while the
job runs; if it dies, its lease runs out and another process takes the job at its next turn.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from stevedore.domain.ports import Clock

log = logging.getLogger(__name__)


class JobLeases(Protocol):
    def acquire(self, job: str, holder: str, now: datetime, due_before: datetime, lease_until: datetime) -> bool:
        """Take `job` for `holder` until `lease_until` if it last started before `due_before` (or never) and no
        unexpired lease (one ending after `now`) is held; True if taken. One atomic write."""
        ...

    def renew(self, job: str, holder: str, lease_until: datetime) -> bool:
        """Extend `holder`'s lease; False when it is no longer the holder."""
        ...

    def release(self, job: str, holder: str, now: datetime, outcome: str) -> None:
        """The job ended: its lease goes, its end and outcome are recorded."""
        ...


@dataclass(frozen=True)
class Schedule:
    interval: timedelta  # between two starts, across the installation
    lease: timedelta = timedelta(minutes=5)  # renewed every lease/3 while the job runs
    poll: timedelta = timedelta(minutes=1)  # how often a process looks whether the job is due
    first_look: timedelta = timedelta(seconds=5)  # soon after the process starts: a job never run is due


class PeriodicJob:
    """Runs `job` when it is due and this process gets the lease. `run_once` is one look; `run_forever` loops."""

    def __init__(
        self,
        name: str,
        job: Callable[[], str],
        leases: JobLeases,
        clock: Clock,
        schedule: Schedule,
        holder: str,
    ) -> None:
        self.name = name
        self.job = job  # returns its outcome, one line
        self.leases = leases  # each call is a transaction of its own
        self.clock = clock
        self.schedule = schedule
        self.holder = holder

    def run_once(self) -> str | None:
        """Run the job if it is due and free; its outcome, or None when it was not this process's turn."""
        now = self.clock.now()
        lease = self.schedule.lease
        if not self.leases.acquire(self.name, self.holder, now, now - self.schedule.interval, now + lease):
            return None
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop,), name=f"{self.name}-lease", daemon=True)
        renewer.start()
        outcome = "failed"
        try:
            outcome = self.job()
            return outcome
        except Exception as exc:
            outcome = f"failed: {type(exc).__name__}: {exc}"[:255]
            log.exception("the periodic %s failed", self.name)
            return outcome
        finally:
            stop.set()
            renewer.join()
            self.leases.release(self.name, self.holder, self.clock.now(), outcome)

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.schedule.lease.total_seconds() / 3):
            try:
                if not self.leases.renew(self.name, self.holder, self.clock.now() + self.schedule.lease):
                    log.warning("the periodic %s lost its lease (held longer than it renewed?)", self.name)
                    return
            except Exception:
                log.exception("could not renew the lease of the periodic %s", self.name)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Look soon after starting, then every `poll` (with jitter, so the processes of a fleet do not ask in step),
        until `stop` is set."""
        stop = stop or threading.Event()
        poll = self.schedule.poll.total_seconds()
        wait = self.schedule.first_look.total_seconds() * random.uniform(0.2, 1.0)
        while not stop.wait(wait):
            wait = poll * random.uniform(0.5, 1.5)
            try:
                outcome = self.run_once()
            except Exception:  # the database is down, say: try again at the next turn
                log.exception("the periodic %s could not be scheduled", self.name)
                continue
            if outcome is not None:
                log.info("periodic %s: %s", self.name, outcome)

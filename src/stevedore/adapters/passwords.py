"""Adapter: the PasswordHasher port with bcrypt, a few checks at a time.

bcrypt costs about a quarter of a second of CPU at cost 12, by design, and each check holds one of waitress's
threads. Unbounded, a few dozen clients failing logins in a loop take every thread and the CPU, and a caller whose
credentials are already cached waits seconds for a thread. So at most `concurrency` checks run at once, twice as
many may wait their turn (a client's burst of parallel first requests), and beyond that a check is refused at once
with TooManyRequests (429): the thread goes back to serving everyone else. Keep 3 x concurrency well below the
server's thread count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import bcrypt

from stevedore.domain.errors import TooManyRequests

T = TypeVar("T")

WAIT_SECONDS = 10.0  # a waiting check gives up after this long (the checks ahead of it are stuck, or very slow)


def default_concurrency() -> int:
    """Half the CPUs, one or two: bcrypt is pure CPU, and the other half serves requests."""
    return max(1, min(2, (os.cpu_count() or 2) // 2))


class PasswordCheckGate:
    """At most `concurrency` callers inside, at most `waiting` more waiting (for `wait_seconds`); the rest refused."""

    def __init__(self, concurrency: int, *, waiting: int | None = None, wait_seconds: float = WAIT_SECONDS) -> None:
        if concurrency < 1:
            raise ValueError("password checks need a concurrency of at least 1")
        self.concurrency = concurrency
        self.max_waiting = 2 * concurrency if waiting is None else waiting
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._waiting = 0

    def run(self, check: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.max_waiting:
                    raise TooManyRequests("too many logins at once: retry in a moment")
                self._waiting += 1
            try:
                acquired = self._slots.acquire(timeout=self.wait_seconds)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise TooManyRequests("too many logins at once: retry in a moment")
        try:
            return check()
        finally:
            self._slots.release()


class BcryptPasswordHasher:
    def __init__(self, rounds: int = 12, *, concurrency: int | None = None) -> None:
        self.rounds = rounds
        self.gate = PasswordCheckGate(concurrency or default_concurrency())

    def hash(self, password: str) -> str:
        salt = bcrypt.gensalt(self.rounds)
        return self.gate.run(lambda: bcrypt.hashpw(password.encode(), salt)).decode()

    def verify(self, password: str, hashed: str) -> bool:
        return self.gate.run(lambda: _checkpw(password, hashed))


def _checkpw(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())  # constant-time inside
    except ValueError:
        return False

"""The bcrypt adapter's bound on password checks: a few run, a few wait, the rest are refused at once."""

from __future__ import annotations

import threading
import time

import pytest

from stevedore.adapters import passwords
from stevedore.adapters.passwords import BcryptPasswordHasher, PasswordCheckGate
from stevedore.domain.errors import TooManyRequests


class Recorder:
    """A check that blocks until released and records how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self) -> bool:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.started.release()
        try:
            assert self.release.wait(timeout=30)
            return True
        finally:
            with self.lock:
                self.running -= 1


def _outcome(gate: PasswordCheckGate, check, results: list[object]) -> None:
    try:
        results.append(gate.run(check))
    except TooManyRequests as exc:
        results.append(exc)


def _wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def test_checks_beyond_the_running_and_waiting_bounds_are_refused_at_once():
    gate = PasswordCheckGate(2, waiting=3)
    check = Recorder()
    results: list[object] = []
    threads = [threading.Thread(target=_outcome, args=(gate, check, results)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for _ in range(2):
        assert check.started.acquire(timeout=30)
    _wait_until(lambda: gate._waiting == 3)  # 2 running, 3 waiting: the gate is full

    with pytest.raises(TooManyRequests):
        gate.run(lambda: True)  # at once, not after a wait

    check.release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [True] * 5  # the waiting ones ran in turn
    assert check.peak == 2


def test_a_check_that_waits_too_long_is_refused():
    gate = PasswordCheckGate(1, waiting=1, wait_seconds=0.2)
    check = Recorder()
    holder = threading.Thread(target=gate.run, args=(check,))
    holder.start()
    assert check.started.acquire(timeout=30)
    try:
        with pytest.raises(TooManyRequests):
            gate.run(lambda: True)
        assert gate._waiting == 0
    finally:
        check.release.set()
        holder.join(timeout=30)
    assert gate.run(lambda: "free again") == "free again"


def test_bcrypt_checks_and_hashes_never_run_more_than_the_bound_at_once(monkeypatch):
    hasher = BcryptPasswordHasher(4, concurrency=2)
    hashed = hasher.hash("a long password")
    lock = threading.Lock()
    running = peak = 0
    real_checkpw, real_hashpw = passwords.bcrypt.checkpw, passwords.bcrypt.hashpw

    def counted(real):
        def wrapper(*args):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                time.sleep(0.05)
                return real(*args)
            finally:
                with lock:
                    running -= 1

        return wrapper

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counted(real_checkpw))
    monkeypatch.setattr(passwords.bcrypt, "hashpw", counted(real_hashpw))
    outcomes: list[object] = []

    def attempt(index: int) -> None:
        try:
            if index % 4 == 0:
                outcomes.append(hasher.hash("another password").startswith("$2"))
            else:
                outcomes.append(hasher.verify("a long password" if index % 2 else "wrong", hashed) == bool(index % 2))
        except TooManyRequests:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert peak <= 2
    assert len(outcomes) == 12 and all(outcome in (True, "refused") for outcome in outcomes)
    assert outcomes.count(True) >= 6  # 2 running and 4 waiting at least


def test_a_bad_hash_is_a_failed_check_not_an_error():
    assert BcryptPasswordHasher(4, concurrency=1).verify("x", "not a bcrypt hash") is False

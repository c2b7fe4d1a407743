"""Domain: the backoff of failed password logins, per account and per client address, kept by a `LoginFailureStore`
(the database, so it holds across processes and nodes). It slows guessing; it never locks the owner out.

The rule, for each key (an account name as typed, lowercased; a client address):
- the first `free_failures` failures cost nothing;
- the n-th failure after them blocks further password checks for that key for min(cap, 2**n) seconds from that
  failure (2, 4, 8, ... seconds). Refusals while blocked check no password and are not counted: the owner's docker
  retrying during an attack does not make the wait longer;
- a key whose last failure is older than its window (an hour, or twice the cap if that is longer, so a block has
  always ended before it is forgotten) starts over;
- a successful login clears the account's count, never the address's: an attacker with an account of their own must
  not clear their address's count by logging in between guesses.

The account cap is small (a minute by default) so the owner is only ever delayed; the address cap is larger. Only
password checks are slowed: the caller checks the backoff right before bcrypt, after the credential cache, and
personal access tokens never reach it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from stevedore.domain.errors import TooManyRequests
from stevedore.domain.ports import Clock

# Keys longer than this (or with unprintable characters) are stored as a hash: a hostile user name of megabytes, or
# with a NUL (which PostgreSQL refuses), is counted like any other but never stored as typed.
MAX_KEY = 64
HASHED_PREFIX = "sha256:"
KEY_COLUMN_LENGTH = len(HASHED_PREFIX) + 64
FORGET_AFTER = timedelta(hours=1)


class KeyKind(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


@dataclass(frozen=True)
class BackoffKey:
    """What failures are counted against: an account name (lowercased: `Alice` counts against `alice`) or a client
    address. The value is bounded: see `MAX_KEY`."""

    kind: KeyKind
    value: str

    @classmethod
    def account(cls, username: str) -> BackoffKey:
        return cls(KeyKind.ACCOUNT, bounded_key(username.lower()))

    @classmethod
    def address(cls, address: str) -> BackoffKey:
        return cls(KeyKind.ADDRESS, bounded_key(address))


def bounded_key(text: str) -> str:
    if 0 < len(text) <= MAX_KEY and text.isprintable():
        return text
    return HASHED_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Failures:
    """The failures counted for a key and when the last one was."""

    count: int
    last_at: datetime


@dataclass(frozen=True)
class BackoffRule:
    """The rule for one kind of key (see the module's docstring)."""

    free_failures: int
    max_seconds: int
    forget_after: timedelta = FORGET_AFTER

    @property
    def window(self) -> timedelta:
        """How long a key's failures are remembered after its last one."""
        return max(self.forget_after, timedelta(seconds=2 * self.max_seconds))

    def delay_seconds(self, count: int) -> int:
        """How long the `count`-th failure blocks the key: 0 while free, then doubling from 2 s, up to the cap."""
        beyond = count - self.free_failures
        if beyond <= 0:
            return 0
        return int(min(self.max_seconds, 2 ** min(beyond, 40)))

    def forgotten(self, failures: Failures, now: datetime) -> bool:
        return failures.last_at <= now - self.window

    def blocked_until(self, failures: Failures | None, now: datetime) -> datetime | None:
        """Until when password checks for the key are refused, or None when they are not."""
        if failures is None or self.forgotten(failures, now):
            return None
        delay = self.delay_seconds(failures.count)
        if delay == 0:
            return None
        until = failures.last_at + timedelta(seconds=delay)
        return until if until > now else None


class LoginFailureStore(Protocol):
    """Failed password logins per key. Every method is atomic across processes and nodes, and writes in the
    caller's transaction (which must not be the request's: a refused login's request transaction is rolled back)."""

    def read(self, keys: Sequence[BackoffKey]) -> dict[BackoffKey, Failures]:
        """The failures on record for those of `keys` that have any (forgotten ones included: the rule decides)."""
        ...

    def record_failure(self, key: BackoffKey, at: datetime, *, forget_before: datetime) -> Failures:
        """One more failure at `at`: the count goes up by one (concurrent failures each count), or starts over at 1
        when the last failure was before `forget_before`. Returns the key's failures after it."""
        ...

    def reset(self, key: BackoffKey) -> None:
        """Forget the key's failures (idempotent)."""
        ...

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        """Drop the keys of this kind whose last failure was before `before`: the table stays as small as the
        failures of the last window."""
        ...


class LoginThrottled(TooManyRequests):
    """Password checks for this account or from this address are refused for a while: too many failed logins."""

    message = "too many failed logins for this account or from this address"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "too many failed logins for this account or from your address: "
            f"try again in {seconds_text(retry_after_seconds)}",
            detail={"retry_after_seconds": retry_after_seconds},
        )
        self.retry_after_seconds = retry_after_seconds


def seconds_text(seconds: int) -> str:
    return "1 second" if seconds == 1 else f"{seconds} seconds"


@dataclass(frozen=True)
class Standing:
    """What a check found: the failures on record for the attempt's keys."""

    failures: dict[BackoffKey, Failures]

    def has_failures(self, key: BackoffKey) -> bool:
        return key in self.failures


@dataclass(frozen=True)
class Blocked:
    """A key that this failure just made blocked for the first time since its count (re)started."""

    key: BackoffKey
    failures: int
    max_seconds: int


class LoginBackoff:
    """The use cases: check before a password check, count a failure, clear an account after a success."""

    def __init__(self, store: LoginFailureStore, clock: Clock, *, account: BackoffRule, address: BackoffRule) -> None:
        self.store = store
        self.clock = clock
        self.rules = {KeyKind.ACCOUNT: account, KeyKind.ADDRESS: address}

    @staticmethod
    def keys(username: str, address: str | None) -> list[BackoffKey]:
        keys = [BackoffKey.account(username)]
        if address:
            keys.append(BackoffKey.address(address))
        return keys

    def check(self, username: str, address: str | None) -> Standing:
        """Raises `LoginThrottled` (with the seconds left, the longest of the keys') when a key is blocked."""
        now = self.clock.now()
        found = self.store.read(self.keys(username, address))
        until = [
            blocked
            for key, failures in found.items()
            if (blocked := self.rules[key.kind].blocked_until(failures, now)) is not None
        ]
        if until:
            raise LoginThrottled(max(1, math.ceil((max(until) - now).total_seconds())))
        return Standing(found)

    def failed(self, username: str, address: str | None) -> list[Blocked]:
        """Count a refused password against the account name and the address. Returns the keys this failure made
        blocked for the first time (the caller records that once in the audit log, not each refusal)."""
        now = self.clock.now()
        blocked = []
        for key in self.keys(username, address):
            rule = self.rules[key.kind]
            failures = self.store.record_failure(key, now, forget_before=now - rule.window)
            if failures.count == rule.free_failures + 1:
                blocked.append(Blocked(key, failures.count, rule.max_seconds))
        for kind, rule in self.rules.items():
            self.store.forget(kind, before=now - rule.window)
        return blocked

    def succeeded(self, username: str) -> None:
        """The right password: the account's count starts over. The address's does not."""
        self.store.reset(BackoffKey.account(username))

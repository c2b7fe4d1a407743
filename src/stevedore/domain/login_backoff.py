"""Domain: the backoff of failed password logins, per account and per client address, kept by a `LoginFailureStore`
(the database, so it holds across processes and nodes). It slows guessing; it never locks the owner out.

The rule, for each key (an account name as typed, lowercased; a client address: an IPv4 address whole, an IPv6
address by its /64 prefix, which one subscriber gets whole):
- the first `free_failures` failures cost nothing;
- the n-th failure after them blocks further password checks for that key for min(cap, 2**n) seconds from that
  failure (2, 4, 8, ... seconds). Refusals while blocked check no password and are not counted: the owner's docker
  retrying during an attack does not make the wait longer;
- a key whose last failure is older than its window (an hour, or twice the cap if that is longer, so a block has
  always ended before it is forgotten) starts over;
- a successful login clears the account's count, never the address's: an attacker with an account of their own must
  not clear their address's count by logging in between guesses.

Every attempt is reserved before its password check (`LoginBackoff.reserve`, in a transaction of its own that holds
the attempt's keys): the standing of its keys is read and, unless blocked, the attempt is counted as *pending* on each
key at once. A pending attempt is not a failure: it becomes one when its password turns out wrong (`failed`), and
simply goes when it was right (`succeeded`: the account's failures start over too) or never checked (`unchecked`). But
the free failures are shared by failures and pending attempts together: a key with attempts in flight takes a new
one only while failures + pending stay within `free_failures`; past them only one password check at a time gets
through per key (the next one is told `LoginBusy` and waits for the one in flight to resolve: a wrong password then
blocks it with the usual wait, a right one lets it go on). So an attacker gets exactly the password checks the rule
allows, sent one by one or all at once, on one node or many: the first `free_failures` + 1 together, then one per wait.
And a burst of right passwords of one account (a CI fleet sharing it, docker's parallel first requests, on several
nodes) is never refused for its own sake: its attempts are pending, never failures, so they never start a wait; past
the free failures they go one after another, each as soon as the one before succeeded. (Counting every attempt as a
failure before its check, as this module once did, refused such a burst with 429 once it outnumbered the free
failures.) A pending attempt whose process died before it resolved is dropped at most `PENDING_FOR` after it was
made, however busy the key is meanwhile: a key's pending count is kept since the first attempt it counts and starts
over once that is `PENDING_FOR` old (a key continuously in flight that long forgets the attempts then in flight; their
outcomes take one each off the new count, never below zero).

The account's block never applies to an address from which the account logged in with its password within the last
`KNOWN_FOR` (30 days): such an address is only subject to its own address key. So a correct password from an address
that logged in to the account within 30 days, or already cached, is never slowed by failures from elsewhere; a new
address of the owner waits at most the account cap (a minute by default) while someone else guesses. The address cap
is larger. Only password checks are slowed: the caller reserves right before bcrypt, after the credential cache, and
personal access tokens never reach it.
"""

from __future__ import annotations

import hashlib
import ipaddress
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
# An address from which an account logged in with its password is exempt from the account's block this long after,
# and its record is renewed at most this often (not a write per login).
KNOWN_FOR = timedelta(days=30)
KNOWN_RENEWED_AFTER = timedelta(days=1)
# A pending attempt (reserved, its password check not yet resolved) is forgotten this long after its reservation:
# only a process that died in between leaves one (a check waits at most seconds for its turn).
PENDING_FOR = timedelta(minutes=2)


class KeyKind(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"
    # An (account, address) pair that logged in with the password: `Failures.last_at` is the last such login.
    KNOWN = "known"
    # Attempts reserved and still being checked, per account and per address (`Failures.count` is how many,
    # `Failures.last_at` the first reservation since the key last had none in flight): see `LoginBackoff.reserve`.
    PENDING_ACCOUNT = "pending-account"
    PENDING_ADDRESS = "pending-address"


PENDING_KIND = {KeyKind.ACCOUNT: KeyKind.PENDING_ACCOUNT, KeyKind.ADDRESS: KeyKind.PENDING_ADDRESS}


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
        return cls(KeyKind.ADDRESS, bounded_key(address_group(address)))

    @classmethod
    def known(cls, username: str, address: str) -> BackoffKey:
        """The account and the address together, always hashed: the table keeps no list of where each account
        logs in from."""
        pair = f"{username.lower()}\0{address_group(address)}"
        return cls(KeyKind.KNOWN, HASHED_PREFIX + hashlib.sha256(pair.encode("utf-8", "surrogatepass")).hexdigest())

    @property
    def pending(self) -> BackoffKey:
        """The key counting this account's or address's attempts in flight."""
        return BackoffKey(PENDING_KIND[self.kind], self.value)


def address_group(address: str) -> str:
    """What one client is counted as: an IPv4 address whole (also written IPv4-mapped), an IPv6 address by its /64
    prefix (a subscriber gets a whole /64 and may send each guess from another address in it). Anything else (not
    an IP address) as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed)


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
    """Failed password logins per key, and the known (account, address) pairs. Writes happen in the caller's
    transaction, which must be one of its own (not the request's: a refused login's request transaction is rolled
    back) and short."""

    def hold(self, keys: Sequence[BackoffKey]) -> None:
        """Until the caller's transaction ends, no other transaction holds any of these keys: reservations of the
        same keys run one after another, on every process and node (idempotent within a transaction)."""
        ...

    def read(self, keys: Sequence[BackoffKey]) -> dict[BackoffKey, Failures]:
        """The records of those of `keys` that have any (forgotten ones included: the rule decides)."""
        ...

    def record_failure(self, key: BackoffKey, at: datetime, *, forget_before: datetime) -> Failures:
        """One more failure at `at`: the count goes up by one (concurrent failures each count), or starts over at 1
        when the last failure was before `forget_before`. Returns the key's failures after it."""
        ...

    def reset(self, key: BackoffKey) -> None:
        """Forget the key's failures (idempotent)."""
        ...

    def release(self, key: BackoffKey) -> None:
        """One less on the key's count, never below 0; the record dropped when none is left (a pending attempt
        resolved)."""
        ...

    def record_known(self, key: BackoffKey, at: datetime) -> None:
        """The (account, address) pair logged in with the password at `at` (a KNOWN key's record, renewed)."""
        ...

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        """Drop the keys of this kind whose last failure (or known login) was before `before`: the table stays as
        small as the records still in their window."""
        ...


class LoginBusy(TooManyRequests):
    """Another password check of this account or from this address is in flight and this attempt would be past the
    free failures: it may go once that one is resolved (the caller waits a little and asks again)."""

    message = "too many logins for this account or from your address are being checked: retry in a moment"
    retry_after_seconds = 1


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
class Blocked:
    """A key that this failure just made blocked for the first time since its count (re)started."""

    key: BackoffKey
    failures: int
    max_seconds: int


@dataclass(frozen=True)
class Reservation:
    """An attempt let through to its password check, counted as pending against its keys since `at`."""

    username: str
    at: datetime
    keys: tuple[BackoffKey, ...]
    # The (account, address) pair's key and its last login with the password (None: none on record), or no key.
    known: BackoffKey | None = None
    known_at: datetime | None = None


class LoginBackoff:
    """The use cases: reserve an attempt before its password check (refused while blocked, counted otherwise); after
    it, report the keys a failure made blocked, or take the count back after a success."""

    def __init__(
        self,
        store: LoginFailureStore,
        clock: Clock,
        *,
        account: BackoffRule,
        address: BackoffRule,
        known_for: timedelta = KNOWN_FOR,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules = {KeyKind.ACCOUNT: account, KeyKind.ADDRESS: address}
        self.known_for = known_for

    @staticmethod
    def keys(username: str, address: str | None) -> list[BackoffKey]:
        keys = [BackoffKey.account(username)]
        if address:
            keys.append(BackoffKey.address(address))
        return keys

    def reserve(self, username: str, address: str | None) -> Reservation:
        """Right before a password check, in a transaction of its own (committed before the check runs): raises
        `LoginThrottled` (with the seconds left, the longest of the blocking keys') when the account's or the
        address's failures block it, or `LoginBusy` when another check of one of them is in flight and this one
        would be past the free failures, counting nothing either way; otherwise counts the attempt as pending on
        both keys and returns the reservation.

        Neither the account's block nor its checks in flight apply when `address` logged in to the account with its
        password within `known_for`."""
        now = self.clock.now()
        keys = self.keys(username, address)
        known = BackoffKey.known(username, address) if address else None
        self.store.hold(keys)
        wanted = [*keys, *(key.pending for key in keys)]
        found = self.store.read([*wanted, known] if known else wanted)
        known_at = found[known].last_at if known in found else None
        exempt = known_at is not None and known_at > now - self.known_for
        applying = [key for key in keys if not (exempt and key.kind == KeyKind.ACCOUNT)]
        until = [
            blocked
            for key in applying
            if (blocked := self.rules[key.kind].blocked_until(found.get(key), now)) is not None
        ]
        if until:
            raise LoginThrottled(max(1, math.ceil((max(until) - now).total_seconds())))
        if any(self._busy(key, found, now) for key in applying):
            raise LoginBusy()
        for key in keys:
            # The pending record keeps the time of its oldest attempt still counted (since the key last had none in
            # flight), not of the latest: attempts left by a dead process must go PENDING_FOR after they were made,
            # not be carried on by every later reservation of a busy key. A record that old starts over at 1.
            pending = found.get(key.pending)
            if pending is not None and pending.last_at > now - PENDING_FOR:
                self.store.record_failure(key.pending, pending.last_at, forget_before=now - PENDING_FOR)
            else:
                self.store.record_failure(key.pending, now, forget_before=now)
        for kind, rule in self.rules.items():
            self.store.forget(kind, before=now - rule.window)
            self.store.forget(PENDING_KIND[kind], before=now - PENDING_FOR)
        return Reservation(username, now, tuple(keys), known, known_at)

    def _busy(self, key: BackoffKey, found: dict[BackoffKey, Failures], now: datetime) -> bool:
        """Are checks of the key in flight, and would this one be past the free failures if they all failed?"""
        pending = found.get(key.pending)
        in_flight = pending.count if pending is not None and pending.last_at > now - PENDING_FOR else 0
        if in_flight <= 0:
            return False
        rule = self.rules[key.kind]
        failures = found.get(key)
        settled = 0 if failures is None or rule.forgotten(failures, now) else failures.count
        return settled + in_flight > rule.free_failures

    def failed(self, reservation: Reservation) -> list[Blocked]:
        """The password was wrong: the attempt, pending until now, is counted as a failure (in one transaction: no
        other reservation sees it neither pending nor failed). Returns the keys this failure made blocked for the
        first time (the caller records that once in the audit log, not each refusal)."""
        now = self.clock.now()
        self.store.hold(list(reservation.keys))
        blocked = []
        for key in reservation.keys:
            rule = self.rules[key.kind]
            failures = self.store.record_failure(key, now, forget_before=now - rule.window)
            self.store.release(key.pending)
            if failures.count == rule.free_failures + 1:
                blocked.append(Blocked(key, failures.count, rule.max_seconds))
        return blocked

    def unchecked(self, reservation: Reservation) -> None:
        """The password was never checked (the password checks were too busy, the database failed): the attempt
        goes from every key, as if it had not been made."""
        self.store.hold(list(reservation.keys))
        for key in reservation.keys:
            self.store.release(key.pending)

    def succeeded(self, reservation: Reservation) -> None:
        """The right password: the attempt goes, and the account's failures start over; the address's failures stay
        (an attacker's own account must not clear their address's count). The address is known to the account from
        now on (the record renewed at most once a day)."""
        self.store.hold(list(reservation.keys))
        for key in reservation.keys:
            if key.kind == KeyKind.ACCOUNT:
                self.store.reset(key)
            self.store.release(key.pending)
        if reservation.known is None:
            return
        now = self.clock.now()
        if reservation.known_at is None or reservation.known_at <= now - KNOWN_RENEWED_AFTER:
            self.store.record_known(reservation.known, now)
            self.store.forget(KeyKind.KNOWN, before=now - self.known_for)

"""Adapter: sending webhook deliveries — an HTTP POST to an address checked by the AddressPolicy and pinned for the
connection, and the deliverer that claims due rows of the outbox (adapters/sql/webhooks.py) and records each result.

Why the address is pinned: the name is resolved once, every address it gives is checked, and the connection goes to
a checked address, with the name still in the Host header and, over https, in SNI and the certificate check. A name
that answered with a public address when the webhook was saved and with 127.0.0.1 now (DNS rebinding) is refused
here, and one that answers differently between our check and our connect cannot slip through, since the connect
uses no second lookup. Redirects are not followed (http.client never does): a 3xx is a failed attempt.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from stevedore.adapters.sql.webhooks import SqlDeliveryQueue
from stevedore.domain.ports import Clock
from stevedore.domain.webhooks import (
    AddressPolicy,
    ClaimedDelivery,
    Resolver,
    TargetRefused,
    checked_addresses,
    headers_for,
    parse_target,
    redacted_url,
    retry_delay,
)

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024  # read (and dropped) of a receiver's answer, so its connection can end cleanly
KEEP_LOG_DAYS = 30  # sent and failed deliveries older than this leave the delivery log
POLL_SECONDS = 5.0  # how often an idle deliverer looks for due deliveries (made by other processes, retries)


class SystemResolver:
    def resolve(self, host: str, port: int) -> list[str]:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        return [str(info[4][0]) for info in found]


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the receiver's status code, None when none came
    error: str | None  # why it failed; None: a 2xx
    permanent: bool = False  # no use trying again (a URL that no longer parses)

    @property
    def ok(self) -> bool:
        return self.error is None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to `address`, whatever `host` resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, address, timeout)
        self._context = context

    def connect(self) -> None:
        super().connect()
        # SNI and the certificate check are for the name, not for the address we pinned.
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


class WebhookSender:
    """POSTs one delivery: resolve, check every address, connect to a checked one, send, read the status. The whole
    attempt ends after `timeout` seconds (a receiver that drips its answer is cut off)."""

    def __init__(
        self,
        policy: AddressPolicy,
        timeout: float,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.resolver = resolver or SystemResolver()
        self.ssl_context = ssl_context or ssl.create_default_context()

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            target = parse_target(url)
            addresses = checked_addresses(target, self.resolver, self.policy)
        except TargetRefused as exc:
            if exc.detail:  # the address a name resolves to: for the server's log, not the delivery log's readers
                log.info("webhook target refused: %s", exc.detail)
            return Outcome(None, f"refused: {exc.message}")  # a name may resolve elsewhere later: tried again
        except Exception as exc:  # InvalidInput: a URL saved before a stricter check
            return Outcome(None, f"refused: {getattr(exc, 'message', exc)}", permanent=True)
        deadline = time.monotonic() + self.timeout
        last_error = "no address to connect to"
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome(None, f"timed out after {self.timeout:g} s")
            connection = self._connection(target.scheme, target.host, target.port, address, remaining)
            try:
                return self._exchange(connection, target.path, body, headers, deadline)
            except _Unreachable as exc:
                last_error = str(exc)  # the next address, if there is one
            finally:
                connection.close()
        return Outcome(None, last_error)

    def _connection(self, scheme: str, host: str, port: int, address: str, timeout: float) -> _PinnedHTTPConnection:
        if scheme == "https":
            return _PinnedHTTPSConnection(host, port, address, timeout, self.ssl_context)
        return _PinnedHTTPConnection(host, port, address, timeout)

    def _exchange(
        self, connection: _PinnedHTTPConnection, path: str, body: bytes, headers: dict[str, str], deadline: float
    ) -> Outcome:
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            raise _Unreachable(f"cannot connect: {_reason(exc)}") from None
        # The overall deadline: whatever the receiver does, the socket is shut when the time is up. What was read
        # by then does not count (a shut socket reads as the end of the headers: a cut answer could look whole).
        cut = threading.Event()
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (connection, cut))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            status = response.status
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            if cut.is_set() or time.monotonic() >= deadline:
                return Outcome(None, f"timed out after {self.timeout:g} s")
            return Outcome(None, f"no answer: {_reason(exc)}")
        finally:
            watchdog.cancel()
        if cut.is_set():
            return Outcome(None, f"timed out after {self.timeout:g} s")
        if 200 <= status < 300:
            return Outcome(status, None)
        if 300 <= status < 400:
            return Outcome(status, f"HTTP {status}: redirects are not followed")
        return Outcome(status, f"HTTP {status}")


class _Unreachable(Exception):
    pass


def _shut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


@dataclass
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.retried + self.failed


class Deliverer:
    """Claims due deliveries one by one and sends them, recording each outcome: sent (2xx), tried again later after
    `retry_delay`, or failed for good. `observe(outcome, seconds)` hears of each attempt (metrics)."""

    def __init__(
        self,
        queue: SqlDeliveryQueue,
        sender: WebhookSender,
        clock: Clock,
        *,
        observe: Callable[[str, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.sender = sender
        self.clock = clock
        self.observe = observe
        self.rng = rng or random.Random()
        # Long enough for one attempt, whatever the receiver does; then the row is another deliverer's to take.
        self.lease = timedelta(seconds=sender.timeout + 60)

    def deliver_one(self) -> str | None:
        """Claim and send one due delivery: "sent", "retried", "failed", or None when none was due."""
        claimed = self.queue.claim(self.clock.now(), self.lease)
        if claimed is None:
            return None
        return self._send(claimed)

    def run_once(self, limit: int | None = None, stop: threading.Event | None = None) -> PassResult:
        """Send every due delivery (at most `limit`): one pass, as the command line's `webhooks deliver` does."""
        result = PassResult()
        if not self.queue.any_due(self.clock.now()):
            return result
        while limit is None or result.total < limit:
            if stop is not None and stop.is_set():
                break
            outcome = self.deliver_one()
            if outcome is None:
                break
            setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    def _send(self, claimed: ClaimedDelivery) -> str:
        started = time.monotonic()
        logged = False
        try:
            body = claimed.payload.encode()
            headers = headers_for(claimed.id, claimed.event_id, claimed.secret, body, self.clock.now())
            outcome = self.sender.send(claimed.url, body, headers)
        except Exception as exc:
            # A bug, or a row the checks did not foresee: a failed attempt, tried again like any other, so the row
            # is not left claimed and uncounted (taken again after every lease, forever) and the round goes on.
            log.error(
                "webhook %d, delivery %d: sending raised an unexpected error\n%s",
                claimed.webhook_id,
                claimed.id,
                _scrubbed(exc, claimed),
            )
            logged = True
            outcome = Outcome(None, f"internal error ({type(exc).__name__}): see the server's log")
        seconds = time.monotonic() - started
        now = self.clock.now()
        if outcome.ok:
            assert outcome.status is not None
            self.queue.sent(claimed, outcome.status, now)
            kind = "sent"
        else:
            error = outcome.error or "failed"
            delay = None if outcome.permanent else retry_delay(claimed.attempts + 1, self.rng)
            if delay is None:
                self.queue.failed(claimed, outcome.status, error)
                kind = "failed"
                log.warning(
                    "webhook delivery %d failed for good after %d attempts: %s", claimed.id, claimed.attempts + 1, error
                )
            else:
                self.queue.retry(claimed, outcome.status, error, now + delay)
                kind = "retried"
                if not logged:
                    log.info(
                        "webhook delivery %d: %s; next attempt in %.0f s", claimed.id, error, delay.total_seconds()
                    )
        if self.observe is not None:
            self.observe(kind, seconds)
        return kind


def _scrubbed(exc: BaseException, claimed: ClaimedDelivery) -> str:
    """The exception's traceback for the log, without the webhook's secret or its URL's path and query, should its
    message hold them."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    if claimed.secret:
        text = text.replace(claimed.secret, "<secret>")
    if claimed.url:
        text = text.replace(claimed.url, redacted_url(claimed.url))
    return text


class DeliveryWorker:
    """The background task of a serving process (Components.background_tasks, started after the fork): delivers
    what is due, then sleeps POLL_SECONDS or until `wake()` (a request of this process committed deliveries).
    Every process and node runs one; the queue's claims keep them from sending an event twice."""

    __name__ = "webhook-delivery"  # the thread's name

    def __init__(self, deliverer: Deliverer, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.deliverer = deliverer
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_prune = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def __call__(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliverer.run_once(stop=self._stop)
                self._prune()
            except Exception:  # the database is away: try again at the next round
                log.exception("webhook deliveries: this round failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _prune(self) -> None:
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        self.deliverer.queue.prune(self.deliverer.clock.now() - timedelta(days=KEEP_LOG_DAYS))

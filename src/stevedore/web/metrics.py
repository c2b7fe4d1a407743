"""Web layer: Prometheus metrics — what the app counts (a tween for every request, the upload views), and
`GET /metrics`, which shows it in Prometheus's text exposition format through prometheus_client.

Labels are route names (Pyramid's: `registry.manifest`, never the path), methods, status codes and upload kinds. No
label holds a path, a repository name, a tag, a digest or an account, so what /metrics shows names nothing anyone
pushed, whoever reads it; a path that matches no route is counted as `notfound`.

Who may read it: anyone when `stevedore.metrics_public = true`; otherwise a scraper sending
`Authorization: Bearer <stevedore.metrics_token>`, or an administrator (Basic with the account's password, or the
pages' session). A personal access token is refused: its scopes are registry actions, never administration.

Several worker processes (`workers = N`, web/workers.py): each would count in its own memory and /metrics would show
whichever worker answered. So the runner (web/server.py) makes a private folder (`make_multiprocess_dir`, which also
removes those that earlier servers, killed, could not) and calls `use_multiprocess_dir` before it forks:
prometheus_client's multiprocess mode, in which every worker writes its values to memory-mapped files of its own there
and /metrics, from any worker, sums the files of all (those of dead workers too, so counters never go down; the
supervisor calls `forget_process` for a dead worker, which drops its live gauges). prometheus_client picks its value
class from PROMETHEUS_MULTIPROC_DIR when it is imported, which here is long before the runner knows how many workers
there are: `use_multiprocess_dir` sets that class itself, and the metric objects are only made in the process that first
counts (`_metrics()`), so in a worker, after the fork. One process keeps plain in-memory values in a registry of its
own.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.adapters.sql.job_leases import GcRunTotals, gc_run_totals
from stevedore.domain.access import may_administer
from stevedore.web.security import parse_basic, parse_bearer, principal_for_password

log = logging.getLogger(__name__)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS_DIR_PREFIX = "stevedore-metrics-"  # then the pid of the server that made it
NOT_FOUND_ROUTE = "notfound"  # the route label of a request that matched no route
# Methods are labels as they are; anything else (a client may send any token) is `other`, so labels stay few.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# How an upload was made: `monolithic` is one POST ?digest= carrying the whole blob (timed from the view's start);
# `session` is POST, then PATCHes or not, then the closing PUT (timed from the session's ticket, in whole seconds).
UPLOAD_KINDS = ("monolithic", "session")
# What became of a webhook delivery attempt: `sent` (a 2xx), `retried` (failed, tried again later), `failed` (for good).
WEBHOOK_OUTCOMES = ("sent", "retried", "failed")
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _RequestMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "stevedore_http_requests",
            "HTTP requests answered, by route name, method and status code",
            ("route", "method", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "stevedore_http_request_duration_seconds",
            "Time from a request's arrival at the app until its response starts (a streamed body not included), "
            "by route name",
            ("route",),
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "stevedore_http_request_body_bytes",
            "Request body bytes read by the app, by route name",
            ("route",),
            registry=registry,
        )
        self.sent = Counter(
            "stevedore_http_response_body_bytes",
            "Response body bytes sent (their Content-Length, or counted as they are streamed), by route name",
            ("route",),
            registry=registry,
        )
        self.in_progress = Gauge(
            "stevedore_http_requests_in_progress",
            "Requests the app is handling now (in every worker process)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.uploads = Histogram(
            "stevedore_blob_upload_duration_seconds",
            "Durations of finished blob uploads: `monolithic` (one POST ?digest=) or `session` (from its POST to its "
            "closing PUT, in whole seconds)",
            ("kind",),
            buckets=UPLOAD_BUCKETS,
            registry=registry,
        )
        # The labelled children a request counts into, by (route, method, status): `.labels()` costs several times
        # what counting into a child does. Bounded (route names x KNOWN_METHODS and `other` x status codes), and
        # made with these metric objects, so in the process that counts (after the fork in a worker).
        self._children: dict[tuple[str, str, str], _Children] = {}

    def children(self, route: str, method: str, status: str) -> _Children:
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Children(
                self.requests.labels(route, method, status),
                self.duration.labels(route),
                self.received.labels(route),
                self.sent.labels(route),
            )
        return found


class _Children(NamedTuple):
    requests: Counter
    duration: Histogram
    received: Counter
    sent: Counter


class _State:
    """This process's metrics, made on first use."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # One process: a registry of our own (never prometheus_client's global one, which other libraries fill).
        # Several: none; the metrics only write their files, and /metrics reads all files.
        self.registry = None if multiprocess_dir else CollectorRegistry(auto_describe=True)
        self.lock = threading.Lock()
        self.requests: _RequestMetrics | None = None
        self.webhooks: _WebhookMetrics | None = None

    def request_metrics(self) -> _RequestMetrics:
        if self.requests is None:
            with self.lock:
                if self.requests is None:
                    self.requests = _RequestMetrics(self.registry)
        return self.requests

    def webhook_metrics(self) -> _WebhookMetrics:
        if self.webhooks is None:
            with self.lock:
                if self.webhooks is None:
                    self.webhooks = _WebhookMetrics(self.registry)
        return self.webhooks


class _WebhookMetrics:
    """Webhook deliveries (adapters/webhook_delivery.py), counted in the process that sends them."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.deliveries = Counter(
            "stevedore_webhook_deliveries",
            "Webhook delivery attempts, by outcome: sent (a 2xx), retried (failed, tried again later), failed (for "
            "good)",
            ("outcome",),
            registry=registry,
        )
        self.duration = Histogram(
            "stevedore_webhook_delivery_duration_seconds",
            "Time of one webhook delivery attempt: resolving, connecting, sending and reading the answer",
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        )
        for outcome in WEBHOOK_OUTCOMES:  # every series from the first scrape on
            self.deliveries.labels(outcome)


_state = _State(None)

# Whether values go to files is the runner's choice (`use_multiprocess_dir`), never the environment's: a
# PROMETHEUS_MULTIPROC_DIR inherited from elsewhere (a stale or missing folder) would have prometheus_client write
# every count there, and fail every request if the folder is gone. Undone here, when the app is first imported.
if MULTIPROCESS_VARIABLE in os.environ or "prometheus_multiproc_dir" in os.environ:
    log.warning("ignoring %s from the environment: the server makes its own folder for workers", MULTIPROCESS_VARIABLE)
    os.environ.pop(MULTIPROCESS_VARIABLE, None)
    os.environ.pop("prometheus_multiproc_dir", None)
    values.ValueClass = values.MutexValue


def use_multiprocess_dir(path: str | None) -> None:
    """Count in prometheus_client's multiprocess mode, in the folder `path` (private to this server, empty), or in
    memory again with None. Call it before forking the processes that count: the metrics made from now on (lazily,
    each in the process that first counts) write their values to files there."""
    global _state
    if path is None:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
        values.ValueClass = values.MutexValue
    else:
        # The files' folder is read from the environment by prometheus_client each time a process opens its file.
        os.environ[MULTIPROCESS_VARIABLE] = path
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _state = _State(path)


def make_multiprocess_dir() -> str:
    """A new private folder (0700) under TMPDIR for the workers' metric files, named after this process
    (`stevedore-metrics-<pid>-<random>`), after removing those that earlier servers left there when they could not
    remove them themselves (a SIGKILLed supervisor)."""
    parent = tempfile.gettempdir()
    remove_stale_multiprocess_dirs(parent)
    return tempfile.mkdtemp(prefix=f"{MULTIPROCESS_DIR_PREFIX}{os.getpid()}-", dir=parent)


def remove_stale_multiprocess_dirs(parent: str) -> list[str]:
    """Remove the folders `stevedore-metrics-<pid>-*` in `parent` that are this user's own (never a link) and whose
    creating process is gone; the paths removed. A folder whose process lives (or that names no pid, or whose pid is
    another user's process) is kept: a pid reused since is only a folder kept longer, never a live one removed."""
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(MULTIPROCESS_DIR_PREFIX):
            continue
        pid_text, dash, _ = name[len(MULTIPROCESS_DIR_PREFIX) :].partition("-")
        if not dash or not pid_text.isdigit() or not pid_text.isascii():
            continue
        pid = int(pid_text)
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or _process_lives(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, the metrics folder of a server that is gone (pid %d)", path, pid)
        removed.append(path)
    return removed


def _process_lives(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it lives, as another user's process
        return True
    return True


def forget_process(pid: int) -> None:
    """A worker process is gone (the supervisor reaped it): drop its live gauges, keep its counters."""
    path = _state.multiprocess_dir
    if path is not None:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def record_blob_upload(kind: str, seconds: float) -> None:
    """A blob upload finished (a blob recorded): how long it took, `kind` one of UPLOAD_KINDS."""
    if kind not in UPLOAD_KINDS:
        raise ValueError(f"unknown upload kind {kind!r}")
    _state.request_metrics().uploads.labels(kind).observe(max(0.0, seconds))


def record_webhook_delivery(outcome: str, seconds: float) -> None:
    """A webhook delivery attempt ended: `outcome` one of WEBHOOK_OUTCOMES, after `seconds`."""
    if outcome not in WEBHOOK_OUTCOMES:
        raise ValueError(f"unknown webhook delivery outcome {outcome!r}")
    metrics = _state.webhook_metrics()
    metrics.deliveries.labels(outcome).inc()
    metrics.duration.observe(max(0.0, seconds))


def exposition(accept: str | None = None, installation: Collector | None = None) -> tuple[bytes, str]:
    """Every metric of this server (of all its workers) in the format the Accept header asks for: Prometheus's text
    format 0.0.4 by default, OpenMetrics on request, with `installation`'s (read from the database, so the same on
    every node). The body and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    registry = CollectorRegistry()
    if _state.multiprocess_dir is not None:
        MultiProcessCollector(registry, path=_state.multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        _state.request_metrics()  # the request series exist from the first scrape on
        _state.webhook_metrics()
        assert _state.registry is not None
        registry.register(_Of(_state.registry))
    if installation is not None:
        registry.register(installation)
    return encoder(registry), content_type


class _Of(Collector):
    """The metrics of a registry, as one collector of another."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class GcCollector(Collector):
    """Garbage collection as recorded by every `stevedore gc` run (gc_runs), whichever node or cron ran it: runs,
    objects and bytes freed, what retention removed, and when the last successful run ended."""

    def __init__(self, read: Callable[[], list[GcRunTotals]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        try:
            totals = self.read()
        except Exception:  # the database is down: /metrics still answers, without these
            log.warning("the gc metrics could not be read", exc_info=True)
            return []
        runs = CounterMetricFamily(
            "stevedore_gc_runs", "gc runs, by trigger and outcome", labels=("trigger", "outcome")
        )
        objects = CounterMetricFamily("stevedore_gc_deleted_blobs", "Blobs deleted by gc (rows and bytes)")
        freed = CounterMetricFamily("stevedore_gc_freed_bytes", "Bytes freed by gc")
        retention = CounterMetricFamily(
            "stevedore_gc_retention_removed", "Tags and untagged manifests removed by retention rules", labels=("kind",)
        )
        last = GaugeMetricFamily(
            "stevedore_gc_last_success_timestamp_seconds", "When the last successful gc run ended (Unix time)"
        )
        for row in totals:
            runs.add_metric((row.trigger, "succeeded" if row.succeeded else "failed"), row.runs)
        objects.add_metric((), sum(row.objects for row in totals))
        freed.add_metric((), sum(row.bytes_freed for row in totals))
        retention.add_metric(("tags",), sum(row.tags_removed for row in totals))
        retention.add_metric(("manifests",), sum(row.manifests_removed for row in totals))
        ended = [row.last_finished_at for row in totals if row.succeeded and row.last_finished_at is not None]
        metrics: list[Metric] = [runs, objects, freed, retention]
        if ended:
            last.add_metric((), max(ended).timestamp())
            metrics.append(last)
        return metrics


# --- counting every request -------------------------------------------------------------------------------------------
def route_label(request: Request) -> str:
    route = getattr(request, "matched_route", None)
    return route.name if route is not None else NOT_FOUND_ROUTE


def method_label(request: Request) -> str:
    method = request.environ.get("REQUEST_METHOD", "")
    return method if method in KNOWN_METHODS else "other"


class _CountingInput:
    """`wsgi.input`, counting the bytes the app reads from it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self.count += len(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        self.count += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _CountingBody:
    """A streamed response body of unknown length, counting its bytes as the server sends them."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]) -> None:
        self._body = body
        self._done = done
        self._count = 0
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._count += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._count)


def metrics_tween_factory(handler: Callable[[Request], Response], registry: Any) -> Callable[[Request], Response]:
    def metrics_tween(request: Request) -> Response:
        started = time.monotonic()
        counting = _CountingInput(request.environ["wsgi.input"]) if "wsgi.input" in request.environ else None
        if counting is not None:
            request.environ["wsgi.input"] = counting
        metrics = _state.request_metrics()
        metrics.in_progress.inc()
        status = "500"  # what the server answers when an exception escapes the app
        try:
            response = handler(request)
            status = str(response.status_code)
        finally:
            metrics.in_progress.dec()
            children = metrics.children(route_label(request), method_label(request), status)
            children.requests.inc()
            children.duration.observe(time.monotonic() - started)
            if counting is not None and counting.count:
                children.received.inc(counting.count)
        sent = children.sent
        if request.method == "HEAD" or response.status_code in (204, 304):
            pass
        elif response.content_length is not None:
            sent.inc(response.content_length)
        else:
            response.app_iter = _CountingBody(response.app_iter, sent.inc)
        return response

    return metrics_tween


# --- GET /metrics -----------------------------------------------------------------------------------------------------
def _refused(status: int, message: str) -> Response:
    response = Response(status=status, content_type="text/plain", charset="utf-8", body=f"{message}\n".encode())
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Stevedore metrics", charset="UTF-8"'
    response.headers["Cache-Control"] = "no-store"
    return response


def metrics_refusal(request: Request) -> Response | None:
    """None when the caller may read the metrics, else the 401 or 403 to answer."""
    settings = request.registry.stevedore.settings
    if settings.metrics_public:
        return None
    header = request.headers.get("Authorization", "")
    bearer = parse_bearer(header)
    if bearer is not None:
        expected = settings.metrics_token
        if expected is not None and hmac.compare_digest(bearer.encode(), expected.encode()):
            return None
        return _refused(401, "this is not the metrics token (stevedore.metrics_token)")
    basic = parse_basic(header)
    if basic is not None:
        principal = principal_for_password(request, *basic)
        if principal is None:
            return _refused(401, "wrong user name or password")
        if principal.access_token is not None:
            return _refused(403, "a personal access token cannot read the metrics: use an administrator's password")
        account = principal.account
    else:
        account = request.web_account  # an administrator signed in on the pages
        if account is None:
            return _refused(401, "the metrics need an administrator's credentials or the metrics token")
    if not may_administer(account):
        return _refused(403, "only administrators may read the metrics")
    return None


@view_config(route_name="metrics", request_method="GET", permission=NO_PERMISSION_REQUIRED)
def metrics_view(request: Request) -> Response:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    connection = request.lookup_connection
    body, content_type = exposition(request.headers.get("Accept"), GcCollector(lambda: gc_run_totals(connection)))
    response = Response(body=body)
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response

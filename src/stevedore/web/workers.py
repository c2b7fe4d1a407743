"""Web layer: several worker processes serving one port (`workers = N` in the ini's [server:main]).

One Python process runs its request threads one at a time (the GIL), so a node with several cores served the read path
of a fleet with one of them. With `workers = N` the runner binds the listening sockets once, then forks N worker
processes, each with its own waitress server (event loop and threads) accepting on those sockets; the kernel hands a
new connection to whichever worker accepts it first. The first process only supervises: a worker that dies is
replaced, and SIGTERM, SIGINT or SIGHUP stops them all.

Nothing that matters lives in one process's memory (several nodes share one database and one storage already); what
each worker keeps for itself is a cache or a local limit: cached credentials, the bcrypt gate
(`password_check_concurrency` is per worker), SQLite's in-process writer queue (workers meet at SQLite's own lock).

The app is built once, in the first process, before the fork: it must not have started threads (they would not exist
in the workers, and a lock one of them held would stay held there). Its database pool is emptied before the fork, so
no worker shares a connection with another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import math
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# A worker that dies this soon after its start counts towards a crash loop; this many in a row stop the server.
QUICK_DEATH_SECONDS = 5.0
MAX_QUICK_DEATHS = 5
STOP_TIMEOUT_SECONDS = 10.0  # after SIGTERM, workers still there are killed
_PR_SET_PDEATHSIG = 1


def worker_count(setting: object) -> int:
    """The `workers` setting: a positive number, or `auto` for one per core this process may run on."""
    text = str(setting).strip().lower() if setting is not None else ""
    if text in ("", "auto"):
        return usable_cpus() if text else 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"workers = {setting!r}: a positive number of processes, or auto (one per core)")
    return count


def usable_cpus() -> int:
    """The cores this process may use: those it may run on, fewer when its cgroup's CPU quota (a container's
    `--cpus`, a Kubernetes CPU limit) allows less."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the cgroup's quota (v2's cpu.max, v1's cfs quota and period), None when unlimited or unknown.
    Only the cgroup mounted at `root` is read, which inside a container is the container's own."""
    try:
        with open(f"{root}/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        with open(f"{root}/cpu/cpu.cfs_quota_us") as handle:
            quota_us = int(handle.read())
        with open(f"{root}/cpu/cpu.cfs_period_us") as handle:
            period_us = int(handle.read())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def bind_sockets(settings: dict[str, Any]) -> list[socket.socket]:
    """The listening sockets waitress would open for these [server:main] settings (listen, host/port, unix_socket or
    sockets), bound and listening, to be shared by the workers."""
    adj = Adjustments(**settings)  # also checks every setting now, in the first process
    if adj.sockets:
        return list(adj.sockets)
    if adj.unix_socket:
        path = adj.unix_socket
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, adj.unix_socket_perms)
        sock.listen(adj.backlog)
        return [sock]
    sockets = []
    try:
        for family, kind, proto, address in adj.listen:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if family == socket.AF_INET6:  # as waitress: an IPv6 socket does not also take IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(adj.backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serving_settings(settings: dict[str, Any], sockets: list[socket.socket]) -> dict[str, Any]:
    """A worker's waitress settings: the shared sockets instead of the addresses to bind."""
    kept = {k: v for k, v in settings.items() if k not in ("listen", "host", "port", "unix_socket", "sockets")}
    return {**kept, "sockets": sockets}


def fork_safe() -> str | None:
    """Why this process cannot fork its workers safely, or None."""
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"threads are running in it ({', '.join(sorted(others))})"
    return None


class Supervisor:
    """Forks `count` workers, each running `serve()` (which serves until the process ends), replaces those that die,
    and stops them all on SIGTERM, SIGINT or SIGHUP. `run()` returns the exit status of the whole."""

    def __init__(self, count: int, serve: Callable[[], object], reaped: Callable[[int], object] | None = None) -> None:
        if count < 1:
            raise ValueError("workers must be at least 1")
        self.count = count
        self.serve = serve
        self.reaped = reaped  # told the pid of each worker that has ended (web/metrics.py forgets its live gauges)
        self.workers: dict[int, float] = {}  # pid -> when it started
        self.stopping = False
        self.quick_deaths = 0
        self.pid = os.getpid()
        self.inherited: dict[int, Any] = {}  # the stop signals' dispositions before run(), restored in the workers

    # --- in the first process ---------------------------------------------------------------------------------------
    def run(self) -> int:
        self.inherited = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number, disposition in self.inherited.items():
            if disposition is not signal.SIG_IGN:  # `nohup` ignores SIGHUP: so do we
                signal.signal(number, self._stop_signal)
        status = 0
        try:
            for _ in range(self.count):
                self._start_worker()
            while self.workers:
                try:
                    pid, wait_status = os.wait()
                except ChildProcessError:
                    break
                started = self.workers.pop(pid, None)
                if started is not None:
                    self._reaped(pid)
                if started is None or self.stopping:
                    continue
                status = self._replace(pid, wait_status, started)
                if status:
                    break
        finally:
            self._stop_workers()
            for number, disposition in self.inherited.items():
                signal.signal(number, disposition if disposition is not None else signal.SIG_DFL)
        return status

    def _replace(self, pid: int, wait_status: int, started: float) -> int:
        """A worker died while serving: start another, unless they keep dying at once (then 1: stop)."""
        how = _describe(wait_status)
        if time.monotonic() - started < QUICK_DEATH_SECONDS:
            self.quick_deaths += 1
        else:
            self.quick_deaths = 0
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            log.error("worker %d %s; %d workers died right after starting: stopping", pid, how, self.quick_deaths)
            return 1
        log.error("worker %d %s: starting another", pid, how)
        time.sleep(0.2 * self.quick_deaths)
        self._start_worker()
        return 0

    def _start_worker(self) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # no handler of ours runs in the child
        try:
            if self.stopping:  # a stop signal came before the block (its handler has run by now): start nothing
                return
            pid = os.fork()
            if pid == 0:
                self._worker()  # never returns
            self.workers[pid] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _reaped(self, pid: int) -> None:
        if self.reaped is None:
            return
        try:
            self.reaped(pid)
        except Exception:
            log.exception("after worker %d ended", pid)

    def _stop_signal(self, number: int, frame: Any) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers", signal.Signals(number).name, len(self.workers))
        self.stopping = True
        self._signal_workers(signal.SIGTERM)

    def _signal_workers(self, number: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                self.workers.pop(pid, None)

    def _stop_workers(self) -> None:
        self.stopping = True
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self.workers:
            for pid in list(self.workers):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done and self.workers.pop(pid, None) is not None:
                    self._reaped(pid)
            if not self.workers:
                break
            if time.monotonic() > deadline:
                log.error("workers %s did not stop in %.0f s: killing them", sorted(self.workers), STOP_TIMEOUT_SECONDS)
                self._signal_workers(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05)

    # --- in a worker ------------------------------------------------------------------------------------------------
    def _worker(self) -> None:
        code = 1
        try:
            for number in STOP_SIGNALS:
                signal.signal(number, _worker_disposition(number, self.inherited.get(number)))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            end_with_parent(self.pid)
            self.serve()
            code = 0
        except (KeyboardInterrupt, SystemExit):
            code = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)


def end_with_parent(parent: int) -> None:
    """Have the kernel end this process when `parent` (the thread that started it) dies, even by SIGKILL (Linux): no
    worker is left serving the port on its own, no periodic gc left running without its lease renewed."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
        if libc is not None and libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno() or errno.EINVAL))
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the call above
        raise SystemExit(0)


def _worker_disposition(number: int, inherited: Any) -> Any:
    """A worker's handling of a stop signal: what the first process inherited when that was to ignore it or the
    default, else the default (SIGTERM and SIGHUP end it, SIGINT raises KeyboardInterrupt)."""
    if inherited is signal.SIG_IGN:
        return signal.SIG_IGN
    return signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL


def _describe(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(number).name
        except ValueError:  # a real-time signal
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"

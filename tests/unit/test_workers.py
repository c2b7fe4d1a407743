"""web/workers.py without forking: the listening sockets bound once for all workers, a worker's waitress settings,
when forking is refused, the `workers` setting, and the supervisor's crash-loop arithmetic (its clock and its
forking replaced)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
from types import SimpleNamespace

import pytest

from stevedore.web import workers as workers_module
from stevedore.web.workers import Supervisor, bind_sockets, fork_safe, serving_settings, worker_count


@pytest.fixture
def opened():
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def test_listen_on_an_address_gives_a_listening_socket_that_accepts(opened):
    opened.extend(bind_sockets({"listen": "127.0.0.1:0"}))
    assert len(opened) == 1
    (sock,) = opened
    assert sock.family == socket.AF_INET
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    host, port = sock.getsockname()
    assert host == "127.0.0.1" and port != 0
    with socket.create_connection((host, port), timeout=10):
        accepted, _ = sock.accept()
        accepted.close()


def test_host_and_port_are_bound_as_waitress_would(opened):
    opened.extend(bind_sockets({"host": "127.0.0.1", "port": "0"}))
    assert [sock.getsockname()[0] for sock in opened] == ["127.0.0.1"]
    assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1 for sock in opened)


def test_a_unix_socket_gets_the_configured_permissions(opened, tmp_path):
    path = str(tmp_path / "stevedore.sock")
    opened.extend(bind_sockets({"unix_socket": path, "unix_socket_perms": "640"}))
    (sock,) = opened
    assert sock.family == socket.AF_UNIX
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o640
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        accepted, _ = sock.accept()
        accepted.close()


def test_a_stale_unix_socket_file_is_replaced(opened, tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as previous:  # a server that died left its file
        previous.bind(path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    opened.extend(bind_sockets({"unix_socket": path}))
    (sock,) = opened
    assert sock.getsockname() == path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)  # the new socket answers at the old path
        accepted, _ = sock.accept()
        accepted.close()


def test_a_file_that_is_no_socket_is_left_alone(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(OSError):
        bind_sockets({"unix_socket": str(path)})
    assert path.read_text() == "keep me"


@pytest.mark.parametrize(
    "settings",
    [
        {"listen": "127.0.0.1:notaport"},
        {"listen": "127.0.0.1:0", "port": "8080"},
        {"listen": "127.0.0.1:0", "unix_socket": "/tmp/stevedore-never.sock"},
        {"listen": "127.0.0.1:0", "threads": "many"},
        {"listen": "127.0.0.1:0", "no_such_setting": "1"},
    ],
)
def test_bad_settings_are_refused_before_anything_is_bound(settings):
    with pytest.raises(ValueError):
        bind_sockets(settings)


def test_an_address_in_use_is_an_os_error_and_no_socket_is_left_open(opened):
    holder = socket.socket()
    opened.append(holder)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        bind_sockets({"listen": f"127.0.0.1:0 127.0.0.1:{port}"})  # the first one is bound, then closed again
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_a_worker_serves_the_shared_sockets_instead_of_binding_its_own(opened):
    opened.extend(bind_sockets({"listen": "127.0.0.1:0"}))
    settings = {
        "listen": "127.0.0.1:0",
        "host": "127.0.0.1",
        "port": "0",
        "unix_socket": "/tmp/x.sock",
        "sockets": ["old"],
        "threads": "8",
        "recv_bytes": "262144",
    }
    served = serving_settings(settings, opened)
    assert served == {"threads": "8", "recv_bytes": "262144", "sockets": opened}
    assert settings["listen"] == "127.0.0.1:0"  # the caller's settings are not changed


def test_forking_is_safe_with_only_this_thread(monkeypatch):
    # Other tests of this run may leave daemon threads behind (pools, servers): look at this thread alone.
    monkeypatch.setattr(workers_module.threading, "enumerate", lambda: [threading.current_thread()])
    assert fork_safe() is None


def test_forking_is_refused_while_another_thread_runs():
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="cache-warmer", daemon=True)
    thread.start()
    try:
        reason = fork_safe()
        assert reason is not None and "cache-warmer" in reason
    finally:
        release.set()
        thread.join(10)
    assert fork_safe() is None or "cache-warmer" not in fork_safe()


@pytest.mark.parametrize(("setting", "count"), [("2", 2), (" 3 ", 3), (1, 1), (None, 1), ("", 1)])
def test_the_workers_setting(setting, count):
    assert worker_count(setting) == count


def test_workers_auto_is_one_per_core_this_process_may_run_on():
    assert worker_count("auto") == worker_count("AUTO") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("setting", ["0", "-2", "many", "1.5"])
def test_a_bad_workers_setting_is_refused(setting):
    with pytest.raises(ValueError, match="positive number"):
        worker_count(setting)


class Clock:
    """The supervisor's clock: `now` moves only when told; sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def supervisor(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(workers_module, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
    supervisor = Supervisor(2, serve=lambda: None)
    started: list[float] = []
    monkeypatch.setattr(supervisor, "_start_worker", lambda: started.append(clock.now))
    return supervisor, clock, started


KILLED = signal.SIGKILL.value  # a wait status: killed by that signal
EXITED_3 = 3 << 8  # a wait status: exited with status 3


def test_a_worker_that_dies_is_replaced(supervisor):
    sup, clock, started = supervisor
    assert sup._replace(4242, KILLED, started=clock.now - 3600) == 0
    assert started == [clock.now]
    assert sup.quick_deaths == 0 and clock.slept == [0.0]


def test_workers_that_keep_dying_at_once_stop_the_server(supervisor):
    sup, clock, started = supervisor
    for death in range(1, workers_module.MAX_QUICK_DEATHS):
        assert sup._replace(4000 + death, EXITED_3, started=clock.now - 1) == 0
        assert sup.quick_deaths == death
    assert len(started) == workers_module.MAX_QUICK_DEATHS - 1
    assert clock.slept == [0.2 * n for n in range(1, workers_module.MAX_QUICK_DEATHS)]  # backing off
    assert sup._replace(4999, EXITED_3, started=clock.now - 1) == 1
    assert len(started) == workers_module.MAX_QUICK_DEATHS - 1  # no worker after the last


def test_a_worker_that_served_a_while_forgives_earlier_quick_deaths(supervisor):
    sup, clock, started = supervisor
    for pid in range(workers_module.MAX_QUICK_DEATHS - 1):
        sup._replace(pid, EXITED_3, started=clock.now - 1)
    clock.now += 600
    assert sup._replace(77, KILLED, started=clock.now - workers_module.QUICK_DEATH_SECONDS - 1) == 0
    assert sup.quick_deaths == 0
    assert sup._replace(78, EXITED_3, started=clock.now - 1) == 0  # one quick death again, not the last of a row
    assert len(started) == workers_module.MAX_QUICK_DEATHS + 1


def test_a_stop_signal_while_a_replacement_waits_starts_no_worker(supervisor, monkeypatch):
    """SIGTERM during the back-off before a replacement: the handler signals the workers there are, and the
    replacement, which it could not signal, must not be started."""
    sup, clock, _started = supervisor
    forks: list[int] = []
    monkeypatch.setattr(workers_module.os, "fork", lambda: forks.append(1) or 12345)
    monkeypatch.setattr(sup, "_start_worker", Supervisor._start_worker.__get__(sup))  # the real one, without a fork
    signalled: list[int] = []
    monkeypatch.setattr(sup, "_signal_workers", signalled.append)
    clock.sleep = lambda seconds: sup._stop_signal(signal.SIGTERM, None)  # type: ignore[method-assign]
    monkeypatch.setattr(workers_module, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
    assert sup._replace(4242, KILLED, started=clock.now - 1) == 0
    assert sup.stopping and signalled == [signal.SIGTERM]
    assert forks == [] and sup.workers == {}


def test_how_a_worker_ended_is_described():
    assert workers_module._describe(KILLED) == "was killed by SIGKILL"
    assert workers_module._describe(EXITED_3) == "exited with status 3"
    assert workers_module._describe(signal.SIGRTMIN + 2) == f"was killed by signal {signal.SIGRTMIN + 2}"


def test_a_supervisor_needs_a_worker():
    with pytest.raises(ValueError):
        Supervisor(0, serve=lambda: None)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu.max": "garbage\n"}, None),
        ({"cpu.max": "100 0\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v2_or_v1(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert workers_module._cgroup_cpu_quota(str(tmp_path)) == quota


@pytest.mark.parametrize(("quota", "count"), [(None, 2), (0.5, 1), (1.5, 2), (8.0, 2)])
def test_workers_auto_counts_no_more_cores_than_the_container_may_use(monkeypatch, quota, count):
    monkeypatch.setattr(workers_module.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(workers_module, "_cgroup_cpu_quota", lambda: quota)
    assert worker_count("auto") == count

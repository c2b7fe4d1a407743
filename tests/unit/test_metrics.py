"""web/metrics.py without a server: the upload histogram, the tween's cached children, prometheus_client's
multiprocess mode switched on after its import (as the runner does before forking), and the supervisor telling it
which worker ended."""

from __future__ import annotations

import os
import signal
import stat
import time
from types import SimpleNamespace

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from stevedore.web import metrics
from stevedore.web import workers as workers_module
from stevedore.web.settings import Settings, SettingsError
from stevedore.web.workers import Supervisor


def sample(name: str, **labels: str) -> float:
    text = metrics.exposition()[0].decode()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def test_an_upload_has_a_known_kind():
    with pytest.raises(ValueError):
        metrics.record_blob_upload("sideways", 1.0)


def test_an_upload_duration_lands_in_its_bucket():
    count = sample("stevedore_blob_upload_duration_seconds_count", kind="session")
    within_five = sample("stevedore_blob_upload_duration_seconds_bucket", kind="session", le="5.0")
    metrics.record_blob_upload("session", 4.0)
    assert sample("stevedore_blob_upload_duration_seconds_count", kind="session") == count + 1
    assert sample("stevedore_blob_upload_duration_seconds_bucket", kind="session", le="5.0") == within_five + 1


@pytest.fixture
def multiprocess(tmp_path):
    """Multiprocess mode in a fresh folder, switched on long after prometheus_client was imported; back after."""
    assert values.ValueClass is values.MutexValue  # imported without PROMETHEUS_MULTIPROC_DIR
    metrics.use_multiprocess_dir(str(tmp_path))
    try:
        yield tmp_path
    finally:
        metrics.use_multiprocess_dir(None)
    assert values.ValueClass is values.MutexValue and metrics.MULTIPROCESS_VARIABLE not in os.environ


def in_child(work) -> int:
    """Run `work` in a forked process (as a worker runs), wait for it to end; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def test_forked_processes_count_into_files_that_any_of_them_sums(multiprocess):
    first = in_child(lambda: metrics.record_blob_upload("session", 2.0))
    second = in_child(
        lambda: (metrics.record_blob_upload("session", 1.0), metrics.record_blob_upload("monolithic", 0.3))
    )
    assert {f"histogram_{first}.db", f"histogram_{second}.db"} <= set(os.listdir(multiprocess))
    # the dead processes' counts stay: counters never go down
    assert sample("stevedore_blob_upload_duration_seconds_count", kind="session") == 2
    assert sample("stevedore_blob_upload_duration_seconds_sum", kind="session") == 3.0
    assert sample("stevedore_blob_upload_duration_seconds_count", kind="monolithic") == 1


def test_a_dead_process_is_forgotten_in_the_live_gauges_only(multiprocess):
    def busy() -> None:
        metrics._state.request_metrics().in_progress.inc()  # as if it died while answering a request
        metrics.record_blob_upload("session", 1.0)

    pid = in_child(busy)
    assert sample("stevedore_http_requests_in_progress") == 1
    metrics.forget_process(pid)
    assert f"gauge_livesum_{pid}.db" not in os.listdir(multiprocess)
    assert sample("stevedore_http_requests_in_progress") == 0
    assert sample("stevedore_blob_upload_duration_seconds_count", kind="session") == 1


def test_one_process_keeps_its_values_in_memory(tmp_path):
    metrics.record_blob_upload("session", 1.0)
    assert metrics._state.multiprocess_dir is None and metrics._state.registry is not None
    assert metrics.MULTIPROCESS_VARIABLE not in os.environ


def metrics_settings(ini: dict[str, str] | None = None, **environ: str) -> Settings:
    base = {"stevedore.database_url": "sqlite://", "stevedore.storage_url": "file:///tmp/blobs", **(ini or {})}
    return Settings.from_mapping(base, environ={"STEVEDORE_SECRET_KEY": "k" * 40, **environ})


def test_metrics_are_closed_by_default_and_the_token_comes_from_the_ini_or_the_environment():
    plain = metrics_settings()
    assert plain.metrics_public is False and plain.metrics_token is None
    assert metrics_settings({"stevedore.metrics_public": "true"}).metrics_public is True
    from_ini = metrics_settings({"stevedore.metrics_token": "ini-token-0123456789"})
    assert from_ini.metrics_token == "ini-token-0123456789"
    assert "ini-token" not in repr(from_ini)  # a secret: never in a log of the settings
    from_env = metrics_settings(
        {"stevedore.metrics_token": "ini-token-0123456789"}, STEVEDORE_METRICS_TOKEN="env-token-0123456789"
    )
    assert from_env.metrics_token == "env-token-0123456789"


@pytest.mark.parametrize("token", ["short", "a token with a \u00e9 0123456789", "tab\tin-the-token-0123456789"])
def test_a_weak_or_unprintable_metrics_token_is_refused(token):
    with pytest.raises(SettingsError, match="metrics_token"):
        metrics_settings({"stevedore.metrics_token": token})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_supervisor_tells_which_worker_ended(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(workers_module, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
    reaped: list[int] = []
    sup = Supervisor(1, serve=lambda: None, reaped=reaped.append)
    started: list[float] = []
    waits = iter([(4242, signal.SIGKILL.value)])

    def wait() -> tuple[int, int]:
        try:
            return next(waits)
        except StopIteration:
            raise ChildProcessError from None

    def start_worker() -> None:
        if not started:  # the first start; the replacement is not tracked, so the loop ends
            sup.workers[4242] = clock.now - 3600
        started.append(clock.now)

    monkeypatch.setattr(sup, "_start_worker", start_worker)
    monkeypatch.setattr(workers_module.os, "wait", wait)
    assert sup.run() == 0
    assert reaped == [4242] and len(started) == 2  # told once, and replaced


def test_a_failing_reaped_callback_does_not_stop_the_supervisor(monkeypatch):
    def fails(pid: int) -> None:
        raise OSError("the metrics folder is gone")

    sup = Supervisor(1, serve=lambda: None, reaped=fails)
    sup.workers[4343] = time.monotonic()
    monkeypatch.setattr(workers_module.os, "waitpid", lambda pid, flags: (pid, 0))
    monkeypatch.setattr(sup, "_signal_workers", lambda number: None)
    sup._stop_workers()
    assert sup.workers == {}


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.content_length = 2
        self.app_iter = (b"ok",)


def _request(method: str = "GET") -> SimpleNamespace:
    return SimpleNamespace(environ={"REQUEST_METHOD": method}, method=method, matched_route=SimpleNamespace(name="r"))


def test_the_tweens_cached_children_count_each_route_method_and_status_apart():
    answers = iter([_Answer(200), _Answer(404), _Answer(200)])
    tween = metrics.metrics_tween_factory(lambda request: next(answers), None)
    before = {s: sample("stevedore_http_requests_total", route="r", method="GET", status=s) for s in ("200", "404")}
    for _ in range(3):
        tween(_request())
    assert sample("stevedore_http_requests_total", route="r", method="GET", status="200") == before["200"] + 2
    assert sample("stevedore_http_requests_total", route="r", method="GET", status="404") == before["404"] + 1
    assert sample("stevedore_http_response_body_bytes_total", route="r") >= 6


def test_children_cached_before_a_fork_are_not_the_workers(multiprocess):
    tween = metrics.metrics_tween_factory(lambda request: _Answer(200), None)
    tween(_request())  # the parent counts first: its metrics and their cached children, in memory of its own
    parents = metrics._state.request_metrics()
    pid = in_child(lambda: tween(_request()))
    assert f"counter_{pid}.db" in os.listdir(multiprocess)  # the child wrote its own file
    assert sample("stevedore_http_requests_total", route="r", method="GET", status="200") == 2
    assert metrics._state.request_metrics() is parents


def dead_pid() -> int:
    return in_child(lambda: None)  # reaped: no process has this pid (until it is reused)


def test_stale_metrics_folders_of_dead_servers_are_removed_and_no_live_ones(tmp_path):
    gone = tmp_path / f"stevedore-metrics-{dead_pid()}-abc"
    (gone / "sub").mkdir(parents=True)
    (gone / "counter_1.db").write_bytes(b"x")
    live = tmp_path / f"stevedore-metrics-{os.getppid()}-def"  # a live process (the one that ran pytest)
    live.mkdir()
    mine = tmp_path / f"stevedore-metrics-{os.getpid()}-ghi"
    mine.mkdir()
    old_style = tmp_path / "stevedore-metrics-abc12345"  # names no pid: who made it cannot be told
    old_style.mkdir()
    not_a_folder = tmp_path / f"stevedore-metrics-{dead_pid()}-file"
    not_a_folder.write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / f"stevedore-metrics-{dead_pid()}-link"
    link.symlink_to(elsewhere)
    other = tmp_path / f"other-{dead_pid()}-abc"
    other.mkdir()

    assert metrics.remove_stale_multiprocess_dirs(str(tmp_path)) == [str(gone)]
    assert not gone.exists()
    assert live.is_dir() and mine.is_dir() and old_style.is_dir() and not_a_folder.is_file() and other.is_dir()
    assert link.is_symlink() and elsewhere.is_dir()


def test_another_users_folder_is_kept(tmp_path, monkeypatch):
    gone = tmp_path / f"stevedore-metrics-{dead_pid()}-abc"
    gone.mkdir()
    monkeypatch.setattr(metrics.os, "getuid", lambda: os.stat(gone).st_uid + 1)
    assert metrics.remove_stale_multiprocess_dirs(str(tmp_path)) == []
    assert gone.is_dir()


def test_a_new_folder_names_its_process_and_clears_the_dead_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics.tempfile, "tempdir", str(tmp_path))
    gone = tmp_path / f"stevedore-metrics-{dead_pid()}-abc"
    gone.mkdir()
    made = metrics.make_multiprocess_dir()
    assert os.path.dirname(made) == str(tmp_path)
    assert os.path.basename(made).startswith(f"stevedore-metrics-{os.getpid()}-")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert not gone.exists()

"""/metrics with `workers = 2`, through a real `pserve` of a real ini: requests served by each worker (told apart from
the kernel's view of who holds the connection, as tests/integration/test_workers.py does) are summed in /metrics,
whichever worker answers the scrape; a dead worker's counts stay and its live gauges go; the private folder of the
workers' metric files is made under TMPDIR (0700) and removed when the server stops, or by the next server if it was
killed. One process keeps no such folder."""

from __future__ import annotations

import http.client
import os
import signal
import stat
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini
from tests.integration.test_workers import WAIT, Node, kill_leftovers, poll, proc_stat

pytestmark = pytest.mark.server

METRICS_TOKEN = "scrape-from-any-worker-0123456789"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics-workers")
    ini = str(base / "setup.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=free_port())
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    return base


@pytest.fixture
def serve(database, tmp_path) -> Iterator[Callable[[str], tuple[Node, str]]]:
    nodes: list[Node] = []

    def start(server_extra: str) -> tuple[Node, str]:
        """A node and the TMPDIR it was given."""
        port = free_port()
        ini = str(tmp_path / f"node{len(nodes)}.ini")
        write_ini(
            ini,
            database_url=f"sqlite:///{database}/db.sqlite",
            storage_dir=str(database / "blobs"),
            port=port,
            extra=f"stevedore.metrics_token = {METRICS_TOKEN}",
            server_extra=server_extra,
        )
        tmpdir = tmp_path / f"tmp{len(nodes)}"
        tmpdir.mkdir(exist_ok=True)  # a test may have put something there first
        log_path = str(tmp_path / f"node{len(nodes)}.log")
        node = Node(ini, port, log_path, WaitressProcess(ini, port, log_path, env={"TMPDIR": str(tmpdir)}))
        nodes.append(node)
        node.server.start()
        node.workers()
        return node, str(tmpdir)

    try:
        yield start
    finally:
        for node in nodes:
            kill_leftovers(node)


def get(connection: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read().decode()


def healthy_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stevedore_http_requests_total" and sample.labels == {
                "route": "healthy",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def gauge(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name}")


def scrape_from(node: Node, worker: int) -> str:
    connection = node.connect_to(worker)
    try:
        status, text = get(connection, "/metrics", SCRAPE)
    finally:
        connection.close()
    assert status == 200, text
    return text


def test_metrics_from_either_worker_sum_what_both_served(serve):
    node, tmpdir = serve("workers = 2")
    first, second = sorted(node.two_workers())
    (folder,) = [os.path.join(tmpdir, name) for name in os.listdir(tmpdir) if name.startswith("stevedore-metrics-")]
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700

    for worker, count in ((first, 3), (second, 5)):
        connection = node.connect_to(worker)  # one keep-alive connection: every request served by this worker
        for _ in range(count):
            assert get(connection, "/-/healthy")[0] == 200
        connection.close()
    # Each worker counts in its own file; each scrape reads them all.
    assert {f"counter_{first}.db", f"counter_{second}.db"} <= set(os.listdir(folder))
    assert healthy_count(scrape_from(node, first)) == 8
    assert healthy_count(scrape_from(node, second)) == 8

    # A worker that dies: its counts stay in the sum, its live gauge (requests in progress) is dropped.
    assert f"gauge_livesum_{second}.db" in os.listdir(folder)
    os.kill(second, signal.SIGKILL)
    poll(lambda: proc_stat(second) is None, "the killed worker reaped by its supervisor")
    poll(lambda: f"gauge_livesum_{second}.db" not in os.listdir(folder), "the dead worker's live gauge forgotten")
    assert f"counter_{second}.db" in os.listdir(folder)
    (newcomer,) = node.two_workers() - {first}
    text = scrape_from(node, newcomer)
    assert healthy_count(text) == 8
    assert gauge(text, "stevedore_http_requests_in_progress") == 1  # this scrape, nothing of the dead worker

    process = node.server.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert process.wait(WAIT) == 0
    assert not os.path.exists(folder)  # the server's metric files go with it


def test_one_process_counts_in_memory_and_makes_no_folder(serve):
    node, tmpdir = serve("workers = 1")
    assert node.workers() == set()
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
    for _ in range(4):
        assert get(connection, "/-/healthy")[0] == 200
    status, text = get(connection, "/metrics", SCRAPE)
    connection.close()
    assert status == 200 and healthy_count(text) == 4
    assert not [name for name in os.listdir(tmpdir) if name.startswith("stevedore-metrics-")]


def test_the_folders_of_killed_servers_are_removed_at_start_and_no_live_ones(serve, tmp_path):
    tmpdir = tmp_path / "tmp0"  # the TMPDIR of the first node
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a server that is gone, as a SIGKILLed supervisor is
    stale = tmpdir / f"stevedore-metrics-{pid}-abcd1234"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"\0" * 64)
    live = tmpdir / f"stevedore-metrics-{os.getpid()}-efgh5678"  # this test's process: alive
    live.mkdir()
    node, _ = serve("workers = 2")
    assert not stale.exists()
    assert live.is_dir()
    (made,) = [name for name in os.listdir(tmpdir) if name.startswith("stevedore-metrics-") and name != live.name]
    assert os.path.isdir(tmpdir / made)
    assert node.server.process is not None
    assert made.startswith(f"stevedore-metrics-{node.server.process.pid}-")  # named after the supervisor


def test_a_folder_named_in_the_environment_is_ignored(serve, tmp_path, monkeypatch):
    """A stale PROMETHEUS_MULTIPROC_DIR (here: a folder that does not exist) changes nothing: one process counts in
    memory, two in a folder of their own."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "gone"))
    for server_extra, expected in (("workers = 1", 2), ("workers = 2", 2)):
        node, _ = serve(server_extra)
        connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
        for _ in range(2):
            assert get(connection, "/-/healthy")[0] == 200
        status, text = get(connection, "/metrics", SCRAPE)
        connection.close()
        assert status == 200 and healthy_count(text) == expected, text
    assert not (tmp_path / "gone").exists()

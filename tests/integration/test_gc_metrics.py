"""What /metrics shows of garbage collection: every `stevedore gc` run is recorded (gc_runs) and summed, whichever
process or node ran it, on SQLite and PostgreSQL; a dry run records nothing; the periodic trigger is told apart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.integration.protocol.helpers import basic, push_blob
from tests.integration.test_fsck import USER, database, make_ini, open_app, prepare, run  # noqa: F401 - fixture
from tests.integration.test_gc import backdate_blobs

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("database")]

AUTH = basic(*USER)


def sample(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def test_gc_runs_are_counted_in_the_metrics(tmp_path, capsys, monkeypatch, database_url):
    ini = make_ini(tmp_path, extra="stevedore.metrics_public = true")
    prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        before = testapp.get("/metrics").text
        assert sample(before, "stevedore_gc_freed_bytes_total") == 0
        assert sample(before, "stevedore_gc_last_success_timestamp_seconds") is None

        garbage = [push_blob(testapp, AUTH, "alice/app", bytes([n]) * (1000 + n)) for n in range(3)]
        for digest in garbage:
            testapp.delete(f"/v2/alice/app/blobs/{digest}", headers=AUTH, status=202)
        backdate_blobs(database_url, garbage, by=timedelta(days=2))

        status, _out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run")
        assert status == 0, err
        assert sample(testapp.get("/metrics").text, "stevedore_gc_freed_bytes_total") == 0  # a dry run: nothing

        status, _out, err = run(capsys, monkeypatch, ini, "gc")
        assert status == 0, err
        monkeypatch.setenv("STEVEDORE_GC_TRIGGER", "periodic")
        status, _out, err = run(capsys, monkeypatch, ini, "gc")  # nothing left: a run all the same
        assert status == 0, err

        after = testapp.get("/metrics").text
        assert sample(after, "stevedore_gc_runs_total", '{outcome="succeeded",trigger="command line"}') == 1
        assert sample(after, "stevedore_gc_runs_total", '{outcome="succeeded",trigger="periodic"}') == 1
        assert sample(after, "stevedore_gc_deleted_blobs_total") == 3
        assert sample(after, "stevedore_gc_freed_bytes_total") == 1000 + 1001 + 1002
        assert sample(after, "stevedore_gc_last_success_timestamp_seconds") is not None
    finally:
        components.engine.dispose()

"""`stevedore user disable|delete|unadmin` never remove the last active administrator; `user admin` makes another."""

from __future__ import annotations

import pytest

from tests.integration.services import free_port, stevedore_cli, write_ini

pytestmark = pytest.mark.server


@pytest.fixture
def ini(tmp_path):
    path = str(tmp_path / "cli.ini")
    write_ini(
        path, database_url=f"sqlite:///{tmp_path}/cli.sqlite", storage_dir=str(tmp_path / "blobs"), port=free_port()
    )
    assert stevedore_cli(path, "db", "upgrade").returncode == 0
    for name, flags in (("boss", ("--admin",)), ("worker", ())):
        made = stevedore_cli(path, "user", "create", name, *flags, "--password-stdin", stdin="a long password\n")
        assert made.returncode == 0, made.stderr
    return path


def test_the_last_administrator_is_never_disabled_deleted_or_unmade(ini):
    for action in ("disable", "delete", "unadmin"):
        refused = stevedore_cli(ini, "user", action, "boss")
        assert refused.returncode != 0
        assert refused.stderr.strip().splitlines() == [
            f"stevedore: error: the last active administrator, boss, cannot be "
            f"{ {'disable': 'disabled', 'delete': 'disabled', 'unadmin': 'unmade'}[action] }: "
            "make another account an administrator first"
        ]
    made = stevedore_cli(ini, "user", "admin", "worker")
    assert made.returncode == 0 and "worker is now an administrator" in made.stdout
    assert stevedore_cli(ini, "user", "unadmin", "boss").returncode == 0
    refused = stevedore_cli(ini, "user", "disable", "worker")
    assert refused.returncode != 0 and "last active administrator, worker" in refused.stderr
    assert stevedore_cli(ini, "user", "delete", "boss").returncode == 0  # no administrator any more: may go

"""oras (the Python client, oras-py) against the live registry: artifacts pushed, listed and pulled.

oras-py's token backend keeps its first token and, after a 401 `insufficient_scope`, retries with that same token
(it only fetches a new one after a 403). A token asked for `pull` (the HEAD before a push) therefore cannot become
a push token, and its pushes fail on any registry that answers insufficient scope with 401 as Distribution does and
as our issue asks. With `auth_backend="basic"` it sends Basic credentials on every request, which Stevedore accepts
(and verifies once, then from its credential cache).
"""

from __future__ import annotations

import oras.client
import pytest

pytestmark = pytest.mark.clients


def client(live_registry, backend):
    oras_client = oras.client.OrasClient(hostname=live_registry.host, insecure=True, auth_backend=backend)
    result = oras_client.login(
        username=live_registry.username, password=live_registry.password, hostname=live_registry.host
    )
    assert result == {"Status": "Login Succeeded"}, result
    return oras_client


def test_oras_pushes_lists_and_pulls_an_artifact(live_registry, repo_name, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("release notes, carried as an OCI artifact\n")
    target = f"{live_registry.host}/{repo_name()}:v1"

    pusher = client(live_registry, "basic")
    response = pusher.push(files=[str(artifact)], target=target, disable_path_validation=True)
    assert response.status_code == 201
    assert pusher.get_tags(f"{live_registry.host}/{repo_name()}") == ["v1"]

    # Pulling works with either backend, the token one included.
    for backend in ("basic", "token"):
        out = tmp_path / f"out-{backend}"
        out.mkdir()
        pulled = client(live_registry, backend).pull(target=target, outdir=str(out))
        assert [p.rsplit("/", 1)[-1] for p in pulled] == ["notes.txt"]
        assert (out / "notes.txt").read_text() == artifact.read_text()


def test_oras_with_a_wrong_password_gets_nothing(live_registry, repo_name, tmp_path):
    # oras-py's login only records the credentials; the registry refuses them on first use.
    artifact = tmp_path / "secret.txt"
    artifact.write_text("not for strangers\n")
    target = f"{live_registry.host}/{repo_name()}:v1"
    client(live_registry, "basic").push(files=[str(artifact)], target=target, disable_path_validation=True)
    for backend in ("basic",):  # the token backend refuses too, but only after a minute of retries with backoff
        stranger = oras.client.OrasClient(hostname=live_registry.host, insecure=True, auth_backend=backend)
        stranger.login(username=live_registry.username, password="a wrong password", hostname=live_registry.host)
        out = tmp_path / f"out-{backend}"
        out.mkdir()
        with pytest.raises(Exception):  # noqa: B017 - oras-py raises ValueError or requests' HTTPError
            stranger.pull(target=target, outdir=str(out))
        assert not (out / "secret.txt").exists()

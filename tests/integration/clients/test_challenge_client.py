"""A client that follows challenges and nothing else (challenge_client.py) against the live registry: a mount asked
with a token for the target only is challenged for the target and the source, and succeeds on the retry."""

from __future__ import annotations

import os

import pytest

from .challenge_client import ChallengeClient

pytestmark = pytest.mark.clients


def test_challenge_following_client_mounts_with_a_token_for_both_repositories(live_registry, registry_http, repo_name):
    source, target = repo_name("src"), repo_name("dst")
    data = os.urandom(4096)
    blob = registry_http.push_blob(source, data)

    client = ChallengeClient(live_registry.url, live_registry.username, live_registry.password)
    client.login(f"repository:{target}:pull,push")  # what it knows it needs to push to the target, nothing more
    mounted = client.request("POST", f"/v2/{target}/blobs/uploads/?mount={blob}&from={source}")
    assert mounted.status == 201, f"{mounted.status} {mounted.body[:300]!r}\n{client.describe()}"
    assert mounted.headers.get("docker-content-digest") == blob

    if client.challenges[0]["scheme"] == "bearer":
        # The first POST was refused for the source alone; the challenge named both scopes and one token got both.
        assert [line.split(" -> ")[1] for line in client.exchanges if line.startswith("POST")] == ["401", "201"]
        challenge = client.challenges[-1]
        assert challenge["error"] == "insufficient_scope"
        assert challenge["scope"].split(" ") == [f"repository:{target}:pull,push", f"repository:{source}:pull"]
        assert client.token_requests[-1] == challenge["scope"].split(" ")
    else:
        assert live_registry.flavor == "distribution", client.describe()  # the htpasswd peer: Basic, mounts at once

    pulled = client.request("GET", f"/v2/{target}/blobs/{blob}")
    assert pulled.status == 200 and pulled.body == data, client.describe()


def test_challenge_following_client_gets_a_fresh_upload_for_a_source_it_cannot_name(live_registry, repo_name):
    """An invalid `from` is no source: a plain 202 with a new session, never a challenge echoing it."""
    target = repo_name("dst")
    client = ChallengeClient(live_registry.url, live_registry.username, live_registry.password)
    client.login(f"repository:{target}:pull,push")
    digest = "sha256:" + "0" * 64
    reply = client.request("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from=Not%22A%20Name")
    assert reply.status == 202, f"{reply.status} {reply.body[:300]!r}\n{client.describe()}"
    assert "www-authenticate" not in reply.headers
    assert client.request("DELETE", reply.headers["location"]).status == 204

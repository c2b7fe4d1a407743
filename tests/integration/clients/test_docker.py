"""docker 20.10 (a private dockerd) against the live registry: login (Basic
or Bearer with identity token), multi-layer push, re-push, cross-repository
push, rmi + pull, logout."""

from __future__ import annotations

import base64
import json
import re

import pytest

from . import images

pytestmark = pytest.mark.clients

MIB = 1 << 20
SIZES = [8 * MIB + 12345, 1 * MIB, 4096]  # three layers, one >= 8 MiB

AUTH_FAILURE_WORDS = ("unauthorized", "authentication required", "no basic auth credentials", "denied", "401")


def push_digest(push_output: str, tag: str) -> str:
    m = re.search(rf"^{re.escape(tag)}: digest: (sha256:[0-9a-f]{{64}}) size: \d+$", push_output, re.M)
    assert m, f"no digest line for {tag!r} in docker push output:\n{push_output}"
    return m.group(1)


def layer_lines(push_output: str) -> list[str]:
    """The per-layer final status lines of a (non-TTY) docker push."""
    return [
        line
        for line in push_output.splitlines()
        if re.match(r"^[0-9a-f]{12}: (Pushed|Layer already exists|Mounted from .*)$", line)
    ]


def test_docker_login_wrong_password_refused(docker, live_registry):
    res = docker.login(password="wrong-" + live_registry.password, check=False)
    assert res.rc != 0, f"docker login with a wrong password succeeded\n{res.describe()}"
    assert any(w in (res.out + res.err).lower() for w in AUTH_FAILURE_WORDS), res.describe()
    assert live_registry.host not in docker.config().get("auths", {}), docker.config()

    res = docker.login()
    assert "Login Succeeded" in res.out, res.describe()
    entry = docker.config().get("auths", {}).get(live_registry.host)
    assert entry, f"no auths entry for {live_registry.host}: {docker.config()}"

    if live_registry.flavor == "stevedore":
        # Bearer flow: dockerd asked the token endpoint for offline access and
        # the CLI stored the refresh token as identity token, not the password
        assert entry.get("identitytoken"), f"no identitytoken stored: {entry}"
        stored = base64.b64decode(entry.get("auth", "")).decode(errors="replace")
        assert live_registry.password not in stored, "password stored despite identity token"
        assert stored.split(":", 1)[0] == live_registry.username, stored
    else:
        user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
        assert (user, pw) == (live_registry.username, live_registry.password)


def test_docker_push_repush_rmi_pull_logout(docker, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    ref = f"{live_registry.host}/{name}:v1"
    arc = images.docker_archive(tmp_path / "image.tar", SIZES, request.node.name, [ref])

    docker.login()
    if live_registry.flavor == "stevedore":
        # every registry call below authenticates with the identity token only
        assert docker.config()["auths"][live_registry.host].get("identitytoken")

    res = docker("load", "-i", str(arc.path), timeout=300)
    assert ref in res.out, res.describe()
    assert docker.image_id(ref) == arc.image_id

    # first push: every layer is uploaded
    res = docker("push", ref, timeout=300)
    pushed = push_digest(res.out, "v1")
    lines = layer_lines(res.out)
    assert len(lines) == len(SIZES) and all(line.endswith("Pushed") for line in lines), res.describe()

    # what the registry holds: a schema 2 manifest over our config
    r = registry_http.get(name, "manifests/v1", accept=images.MT_DOCKER_MANIFEST)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers.get("docker-content-digest") == pushed, (r.headers, pushed)
    assert images.sha256_digest(r.body) == pushed
    m = r.json()
    assert m["mediaType"] == images.MT_DOCKER_MANIFEST, m
    assert m["config"]["digest"] == arc.image_id, m
    assert len(m["layers"]) == len(SIZES), m
    assert max(layer["size"] for layer in m["layers"]) >= 8 * MIB, m
    r = registry_http.get(name, f"blobs/{arc.image_id}")
    assert r.status == 200 and r.body == arc.config, (r.status, r.body[:300])

    # re-push of the unchanged image: only HEADs and the manifest PUT
    res = docker("push", ref, timeout=300)
    assert push_digest(res.out, "v1") == pushed
    lines = layer_lines(res.out)
    assert len(lines) == len(SIZES) and all(line.endswith("Layer already exists") for line in lines), res.describe()

    # rmi, then pull gives back the very same image
    docker("rmi", ref)
    docker.fails("image", "inspect", ref)
    res = docker("pull", ref, timeout=300)
    assert f"Digest: {pushed}" in res.out, res.describe()
    assert docker.image_id(ref) == arc.image_id
    layers = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).out)
    assert layers == arc.diff_ids, layers
    repo_digests = docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).out
    assert f"{live_registry.host}/{name}@{pushed}" in repo_digests, repo_digests

    # pull by digest works too
    docker("pull", f"{live_registry.host}/{name}@{pushed}", timeout=300)

    # logout, then the registry refuses the pull
    res = docker("logout", live_registry.host)
    assert live_registry.host not in docker.config().get("auths", {}), docker.config()
    docker("rmi", ref)
    res = docker.fails("pull", ref, timeout=120)
    assert any(w in (res.out + res.err).lower() for w in AUTH_FAILURE_WORDS), res.describe()


def test_docker_push_to_second_repository(docker, registry_http, live_registry, tmp_path, request, repo_name):
    """Pushing layers the registry already has in another repository: docker
    tries a cross-repository mount (POST ...?mount=&from=) and falls back to
    an upload if the registry does not mount."""
    first = repo_name("a")
    second = repo_name("b")
    ref1 = f"{live_registry.host}/{first}:v1"
    ref2 = f"{live_registry.host}/{second}:v1"
    arc = images.docker_archive(tmp_path / "image.tar", [MIB, 2048], request.node.name, [ref1])
    docker.login()
    docker("load", "-i", str(arc.path), timeout=300)
    d1 = push_digest(docker("push", ref1, timeout=300).out, "v1")
    docker("tag", ref1, ref2)
    res = docker("push", ref2, timeout=300)
    d2 = push_digest(res.out, "v1")
    assert d1 == d2, "the same image pushed to two repositories has two manifest digests"
    lines = layer_lines(res.out)
    assert len(lines) == 2, res.describe()
    mounted = [line for line in lines if "Mounted from" in line]
    if live_registry.flavor == "distribution":
        assert len(mounted) == 2, res.describe()
    for line in mounted:
        assert line.endswith(f"Mounted from {first}"), res.describe()

    # the second repository serves every blob on its own
    m = registry_http.get(second, "manifests/v1", accept=images.MT_DOCKER_MANIFEST).json()
    for desc in [m["config"], *m["layers"]]:
        r = registry_http.request("HEAD", f"/v2/{second}/blobs/{desc['digest']}", scope=f"repository:{second}:pull")
        assert r.status == 200, (desc, r.status)
        assert int(r.headers.get("content-length", -1)) == desc["size"], (desc, r.headers)
        assert r.headers.get("docker-content-digest") == desc["digest"], r.headers

    docker("rmi", ref1, ref2)
    docker("pull", ref2, timeout=300)
    assert docker.image_id(ref2) == arc.image_id


def test_docker_mounts_every_layer_into_a_second_repository_with_its_token(
    docker, registry_http, live_registry, tmp_path, request, repo_name
):
    """docker 20.10 remembers which repository holds each layer it pushed and, for a mount, asks the token endpoint
    for `repository:<source>:pull` next to the target's `pull,push` (the distribution client's token handler adds the
    `from` repository), so the registry mounts every layer at once: nothing is uploaded twice."""
    first = repo_name("a")
    second = repo_name("b")
    ref1 = f"{live_registry.host}/{first}:v1"
    ref2 = f"{live_registry.host}/{second}:v1"
    arc = images.docker_archive(tmp_path / "image.tar", [MIB, 4096, 2048], request.node.name, [ref1])
    docker.login()
    if live_registry.flavor == "stevedore":
        assert docker.config()["auths"][live_registry.host].get("identitytoken"), "docker is not in the token flow"
    docker("load", "-i", str(arc.path), timeout=300)
    pushed = push_digest(docker("push", ref1, timeout=300).out, "v1")
    docker("tag", ref1, ref2)
    res = docker("push", ref2, timeout=300)
    assert push_digest(res.out, "v1") == pushed
    lines = layer_lines(res.out)
    assert len(lines) == 3 and all(line.endswith(f"Mounted from {first}") for line in lines), res.describe()
    m = registry_http.get(second, "manifests/v1", accept=images.MT_DOCKER_MANIFEST).json()
    for desc in m["layers"]:
        r = registry_http.request("HEAD", f"/v2/{second}/blobs/{desc['digest']}", scope=f"repository:{second}:pull")
        assert r.status == 200 and int(r.headers.get("content-length", -1)) == desc["size"], (desc, r.status)
    docker("rmi", ref1, ref2)


def test_docker_push_without_login_is_refused(docker, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    ref = f"{live_registry.host}/{name}:v1"
    arc = images.docker_archive(tmp_path / "image.tar", [4096], request.node.name, [ref])
    docker("load", "-i", str(arc.path))
    res = docker.fails("push", ref, timeout=120)
    assert any(w in (res.out + res.err).lower() for w in AUTH_FAILURE_WORDS), res.describe()
    # dockerd retries a layer upload 5 times (~50 s of back-off) unless the
    # 401 is an error it knows is final: an errcode error whose message is not
    # the default one or that carries a "detail" (a bare {"code":"UNAUTHORIZED"}
    # decodes to a plain ErrorCode, which dockerd treats as retryable)
    assert "Retrying in" not in res.out and res.seconds < 20, (
        "docker kept retrying an unauthorized push\n" + res.describe()
    )
    r = registry_http.get(name, "manifests/v1", accept=images.MT_DOCKER_MANIFEST)
    assert r.status == 404, (r.status, r.body[:300])  # nothing was stored
    docker("rmi", ref)

"""podman 4.3 against the live registry: login, load, push, rmi, pull, logout."""

from __future__ import annotations

import base64
import json

import pytest

from . import images

pytestmark = pytest.mark.clients

SIZES = [2 << 20, 4096]  # a 2 MiB random layer and a small one


def load_image(podman, tmp_path, request, ref: str) -> images.DockerArchive:
    arc = images.docker_archive(tmp_path / "image.tar", SIZES, request.node.name, [ref])
    res = podman("load", "-i", str(arc.path))
    assert ref in res.out, res.describe()
    assert podman("image", "inspect", "--format", "{{.Id}}", ref).out.strip() == arc.image_id.split(":", 1)[1]
    return arc


def test_podman_login_refuses_wrong_password(podman, live_registry):
    res = podman.login(password="not-the-password", check=False)
    assert res.rc != 0, f"login with a wrong password succeeded\n{res.describe()}"
    auths = json.loads(podman.authfile.read_text()).get("auths", {}) if podman.authfile.exists() else {}
    assert live_registry.host not in auths, auths

    podman.login()
    auths = json.loads(podman.authfile.read_text())["auths"]
    entry = auths[live_registry.host]
    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
    assert user == live_registry.username and pw == live_registry.password


def test_podman_load_push_rmi_pull(podman, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    ref = f"{live_registry.host}/{name}:v1"
    podman.login()
    arc = load_image(podman, tmp_path, request, ref)

    digestfile = tmp_path / "pushed-digest"
    podman.push(ref, ref, "--digestfile", str(digestfile))
    pushed = digestfile.read_text().strip()

    r = registry_http.get(name, "manifests/v1", accept=f"{images.MT_DOCKER_MANIFEST}, {images.MT_OCI_MANIFEST}")
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers.get("docker-content-digest") == pushed, (r.headers, pushed)
    assert images.sha256_digest(r.body) == pushed
    m = r.json()
    assert m["config"]["digest"] == arc.image_id, m
    assert len(m["layers"]) == len(SIZES), m

    podman("rmi", "-f", ref)
    podman.fails("image", "exists", ref)

    res = podman.pull(ref)
    assert arc.image_id.split(":", 1)[1] in res.out, res.describe()
    inspect = json.loads(podman("image", "inspect", ref).out)[0]
    assert inspect["Id"] == arc.image_id.split(":", 1)[1], inspect["Id"]
    assert inspect["Digest"] == pushed, (inspect["Digest"], pushed)
    assert inspect["RootFS"]["Layers"] == arc.diff_ids, inspect["RootFS"]
    assert inspect["Labels"]["stevedore.test.seed"] == request.node.name


def test_podman_push_oci_format(podman, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    ref = f"{live_registry.host}/{name}:oci"
    podman.login()
    arc = load_image(podman, tmp_path, request, ref)
    digestfile = tmp_path / "pushed-digest"
    podman.push(ref, ref, "--format", "oci", "--digestfile", str(digestfile))
    pushed = digestfile.read_text().strip()

    r = registry_http.get(name, "manifests/oci", accept=images.MT_OCI_MANIFEST)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers.get("content-type", "").split(";")[0] == images.MT_OCI_MANIFEST, r.headers
    assert images.sha256_digest(r.body) == pushed
    m = r.json()
    assert m["mediaType"] == images.MT_OCI_MANIFEST
    assert all(layer["mediaType"] == images.MT_OCI_LAYER_GZIP for layer in m["layers"]), m

    # pull it into a fresh store (same storage, image removed first)
    podman("rmi", "-f", ref)
    podman.pull(ref)
    inspect = json.loads(podman("image", "inspect", ref).out)[0]
    assert inspect["RootFS"]["Layers"] == arc.diff_ids
    assert inspect["Digest"] == pushed


def test_podman_logout_then_pull_fails(podman, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    ref = f"{live_registry.host}/{name}:v1"
    podman.login()
    load_image(podman, tmp_path, request, ref)
    podman.push(ref, ref)
    podman("rmi", "-f", ref)

    res = podman("logout", "--authfile", str(podman.authfile), live_registry.host)
    assert "Removed login credentials" in res.out, res.describe()
    res = podman.pull(ref, check=False)
    assert res.rc != 0, f"pull without credentials succeeded\n{res.describe()}"
    err = res.err.lower()
    assert "unauthorized" in err or "authentication required" in err, res.describe()
    podman.fails("image", "exists", ref)

    # and with credentials again it works
    podman.login()
    podman.pull(ref)

"""buildah 1.28 against the live registry: build from scratch (working
container and Containerfile), push, pull back and check the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import images

pytestmark = pytest.mark.clients


def mounted_file(buildah, container: str, path: str) -> bytes:
    root = buildah("mount", container).out.strip()
    try:
        return (Path(root) / path.lstrip("/")).read_bytes()
    finally:
        buildah("umount", container)


def test_buildah_from_scratch_commit_push_pull(buildah, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    remote = f"{live_registry.host}/{name}:v1"
    content = images.payload(512 * 1024, request.node.name)
    src = tmp_path / "payload.bin"
    src.write_bytes(content)

    buildah.login()
    ctr = buildah("from", "scratch").out.strip()
    buildah("copy", ctr, str(src), "/data/payload.bin")
    buildah("config", "--label", f"stevedore.test={request.node.name}", "--cmd", "/data/payload.bin", ctr)
    image_id = buildah("commit", "--rm", ctr, "localhost/buildah-scratch:v1").out.strip().splitlines()[-1]

    digestfile = tmp_path / "pushed-digest"
    buildah.push("localhost/buildah-scratch:v1", remote, "--digestfile", str(digestfile))
    pushed = digestfile.read_text().strip()

    r = registry_http.get(name, "manifests/v1", accept=f"{images.MT_OCI_MANIFEST}, {images.MT_DOCKER_MANIFEST}")
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers.get("docker-content-digest") == pushed
    assert r.json()["config"]["digest"] == f"sha256:{image_id}", r.body

    buildah("rmi", "-a", "-f")
    assert buildah("images", "-q").out.strip() == ""
    res = buildah.pull(remote)
    assert image_id in res.out, res.describe()

    ctr2 = buildah("from", "--pull=never", remote).out.strip()
    assert mounted_file(buildah, ctr2, "/data/payload.bin") == content
    info = json.loads(buildah("inspect", "--type", "image", remote).out)
    assert info["OCIv1"]["config"]["Labels"]["stevedore.test"] == request.node.name
    buildah("rm", ctr2)


def test_buildah_bud_containerfile_push_pull(buildah, registry_http, live_registry, tmp_path, request, repo_name):
    name = repo_name()
    remote_oci = f"{live_registry.host}/{name}:oci"
    remote_v2 = f"{live_registry.host}/{name}:v2s2"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    a = images.payload(256 * 1024, f"{request.node.name}:a")
    b = images.payload(100_000, f"{request.node.name}:b", pattern=True)
    (ctx / "a.bin").write_bytes(a)
    (ctx / "b.txt").write_bytes(b)
    (ctx / "Containerfile").write_text(
        f'FROM scratch\nCOPY a.bin /srv/a.bin\nCOPY b.txt /srv/b.txt\nLABEL stevedore.test="{request.node.name}"\n'
    )
    buildah.login()
    buildah(
        "bud",
        "--layers=false",
        "-f",
        str(ctx / "Containerfile"),
        "-t",
        "localhost/buildah-bud:v1",
        str(ctx),
        timeout=300,
    )

    d_oci, d_v2 = tmp_path / "d-oci", tmp_path / "d-v2"
    buildah.push("localhost/buildah-bud:v1", remote_oci, "--format", "oci", "--digestfile", str(d_oci))
    buildah.push("localhost/buildah-bud:v1", remote_v2, "--format", "v2s2", "--digestfile", str(d_v2))
    for tag, mt, dfile in (("oci", images.MT_OCI_MANIFEST, d_oci), ("v2s2", images.MT_DOCKER_MANIFEST, d_v2)):
        r = registry_http.get(name, f"manifests/{tag}", accept=mt)
        assert r.status == 200, (tag, r.status, r.body[:500])
        assert r.headers.get("content-type", "").split(";")[0] == mt, (tag, r.headers)
        assert images.sha256_digest(r.body) == dfile.read_text().strip(), tag

    buildah("rmi", "-a", "-f")
    for remote in (remote_oci, remote_v2):
        ctr = buildah(
            "from",
            "--tls-verify=false",
            "--authfile",
            str(buildah.authfile),
            "--signature-policy",
            str(buildah.policy),
            remote,
        ).out.strip()
        assert mounted_file(buildah, ctr, "/srv/a.bin") == a, remote
        assert mounted_file(buildah, ctr, "/srv/b.txt") == b, remote
        buildah("rm", ctr)

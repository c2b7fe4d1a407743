"""Real clients against two nodes: docker and skopeo push through nginx (round-robin, so one push's requests land
on both nodes) and pull or inspect from each node directly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clients import images
from tests.integration.clients.conftest import DockerCLI, Dockerd, require_tool, run
from tests.integration.scaleout.conftest import Endpoint, Fleet, served

pytestmark = [pytest.mark.scaleout, pytest.mark.s3, pytest.mark.postgres, pytest.mark.server, pytest.mark.clients]

KIB = 1 << 10
MIB = 1 << 20


@pytest.fixture(scope="module")
def scaleout_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    daemon = Dockerd(tmp_path_factory.mktemp("scaleout-dockerd"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_docker_pushes_through_nginx_and_pulls_from_each_node(
    fleet: Fleet, scaleout_dockerd: Dockerd, tmp_path: Path
) -> None:
    config = tmp_path / "docker-config"
    through = DockerCLI(scaleout_dockerd, config, fleet.proxy)
    through.login()
    pushed = f"{fleet.proxy.host}/scaleout/docker:v1"
    # A layer over one S3 part (5 MiB): its PATCH fills a multipart upload; and a small one.
    archive = images.docker_archive(tmp_path / "image.tar", [6 * MIB, 64 * KIB], "scaleout-docker", [pushed])
    through("load", "-i", str(archive.path), timeout=300)
    through("push", pushed, timeout=300)
    through("rmi", pushed)
    for index, node in enumerate(fleet.nodes):
        direct = DockerCLI(scaleout_dockerd, config, node)
        direct.login()
        ref = f"{node.host}/scaleout/docker:v1"
        before = served(fleet.node_logs[index], r"GET /v2/scaleout/docker/blobs/sha256:\w+ 307")
        direct("pull", ref, timeout=300)
        assert direct.image_id(ref) == archive.image_id
        # Pulled from this node: it answered the layer and config GETs itself, each with a 307 to a presigned S3 URL
        # (on by default for S3), which docker followed to moto's server and verified by digest.
        after = served(fleet.node_logs[index], r"GET /v2/scaleout/docker/blobs/sha256:\w+ 307")
        assert after - before >= 3, (before, after)
        direct("rmi", ref)
    # docker's own requests went to both nodes through the proxy.
    for log in fleet.node_logs:
        assert served(log, r"(PATCH|PUT) /v2/scaleout/docker/") >= 1


def test_skopeo_copies_through_nginx_and_each_node_serves_the_image(fleet: Fleet, tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    registries = tmp_path / "registries.conf"
    registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    creds = f"{fleet.proxy.username}:{fleet.proxy.password}"
    env = {"TMPDIR": str(tmp_path), "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"), "PATH": "/usr/bin:/bin"}
    common = [skopeo, "--policy", str(policy), "--registries-conf", str(registries)]

    def remote(endpoint: Endpoint) -> str:
        return f"docker://{endpoint.host}/scaleout/skopeo:v1"

    layout = tmp_path / "layout"
    image = images.oci_layout(layout, [5 * MIB + 7, 4 * KIB], "scaleout-skopeo", tag="v1")
    digest_file = tmp_path / "pushed.digest"
    run(
        [
            *common,
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            "--digestfile",
            str(digest_file),
            f"oci:{layout}:v1",
            remote(fleet.proxy),
        ],
        env=env,
        redact=(creds,),
        timeout=300,
    )
    assert digest_file.read_text().strip() == image.digest
    for index, node in enumerate(fleet.nodes):
        raw = run([*common, "inspect", "--raw", "--tls-verify=false", "--creds", creds, remote(node)], env=env)
        assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == image.digest
        back = tmp_path / f"back-{index}"
        run(
            [*common, "copy", "--src-tls-verify=false", "--src-creds", creds, remote(node), f"oci:{back}:v1"],
            env=env,
            redact=(creds,),
            timeout=300,
        )
        descriptor, body = images.read_layout_manifest(back, "v1")
        assert descriptor["digest"] == image.digest
        for layer in json.loads(body)["layers"]:
            images.read_layout_blob(back, layer["digest"])  # present, and its bytes match its digest
        assert served(fleet.node_logs[index], r"GET /v2/scaleout/skopeo/blobs/sha256:\w+ (200|307)") >= 3

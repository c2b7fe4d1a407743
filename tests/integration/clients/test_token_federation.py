"""Stevedore as the accounts and rights of other registries: CNCF Distribution (Debian's `docker-registry`) runs
with `auth: token`, its realm our `/v2/token` and our published certificate as its `rootcertbundle`. docker and
skopeo log in to that Distribution with Stevedore accounts; Distribution verifies our JWTs with nothing but the
certificate, and enforces exactly the access our token grants."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.integration.services import LiveRegistry, WaitressProcess, free_port, stevedore_cli, write_ini

from . import images
from .conftest import DockerCLI, Skopeo
from .peer_registry import DistributionRegistry

pytestmark = pytest.mark.clients

PEER_SERVICE = "fleet-registry"
ISSUER = "stevedore-accounts"
PASSWORD = "fleet password 1"


class Federation:
    def __init__(self, stevedore_url: str, peer: LiveRegistry, ini: str) -> None:
        self.stevedore_url = stevedore_url
        self.peer = peer
        self.ini = ini

    def as_user(self, username: str, password: str = PASSWORD) -> LiveRegistry:
        return LiveRegistry(
            host=self.peer.host, url=self.peer.url, username=username, password=password, ini_path=self.ini
        )

    def stevedore_token(self, username: str, *scopes: str, service: str = PEER_SERVICE) -> str:
        query = urllib.parse.urlencode([("service", service), *(("scope", s) for s in scopes)])
        request = urllib.request.Request(f"{self.stevedore_url}/v2/token?{query}")
        credentials = f"{username}:{PASSWORD}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.load(response)["token"])

    def peer_status(self, method: str, path: str, token: str | None) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{self.peer.url}{path}", method=method, data=b"" if method == "POST" else None
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("WWW-Authenticate", "")
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("WWW-Authenticate", "")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    base = tmp_path_factory.mktemp("federation")
    port = free_port()
    ini = str(base / "stevedore.ini")
    write_ini(
        ini,
        database_url=f"sqlite:///{base}/stevedore.sqlite",
        storage_dir=str(base / "blobs"),
        port=port,
        extra=f"stevedore.token_audiences = {PEER_SERVICE}\nstevedore.token_issuer = {ISSUER}\n"
        f"stevedore.public_url = http://127.0.0.1:{port}",
    )
    for args, stdin in (
        (("db", "upgrade"), None),
        (("user", "create", "fleet-user", "--password-stdin"), PASSWORD + "\n"),
        (("user", "create", "fleet-leaver", "--password-stdin"), PASSWORD + "\n"),
        (("user", "disable", "fleet-leaver"), None),
        # No push to the peer ever claims a namespace here: fleet-user pushes to `fleet` by a right given up front.
        (("namespace", "create", "fleet", "--owner", "fleet-user"), None),
    ):
        result = stevedore_cli(ini, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
    server = WaitressProcess(ini, port, str(base / "stevedore.log"))
    server.start()
    stevedore_url = f"http://127.0.0.1:{port}"
    bundle = base / "stevedore-tokens.pem"
    with urllib.request.urlopen(f"{stevedore_url}/-/token-certificates.pem", timeout=30) as response:
        bundle.write_bytes(response.read())
    peer = DistributionRegistry(
        base / "distribution",
        token_auth={
            "realm": f"{stevedore_url}/v2/token",
            "service": PEER_SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(bundle),
        },
    )
    try:
        live = peer.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(f"could not start Distribution with token auth: {exc}", pytrace=False)
    try:
        yield Federation(stevedore_url, live, ini)
    finally:
        peer.stop()
        server.stop()


def test_distribution_challenges_with_stevedores_realm(federation):
    status, challenge = federation.peer_status("GET", "/v2/", None)
    assert status == 401
    assert f'realm="{federation.stevedore_url}/v2/token"' in challenge and f'service="{PEER_SERVICE}"' in challenge


def test_distribution_accepts_exactly_what_stevedore_granted(federation):
    pull_only = federation.stevedore_token("fleet-user", "repository:fleet/app:pull")
    assert federation.peer_status("GET", "/v2/", pull_only)[0] == 200
    assert federation.peer_status("GET", "/v2/fleet/app/tags/list", pull_only)[0] == 404  # allowed, and empty
    status, challenge = federation.peer_status("POST", "/v2/fleet/app/blobs/uploads/", pull_only)
    assert status == 401 and "insufficient_scope" in challenge  # Distribution enforces our `access` claim
    push = federation.stevedore_token("fleet-user", "repository:fleet/app:pull,push")
    assert federation.peer_status("POST", "/v2/fleet/app/blobs/uploads/", push)[0] == 202
    # In a namespace free to claim here, a token for the peer carries no push: no push of ours would claim it.
    unclaimed = federation.stevedore_token("fleet-user", "repository:unclaimed/app:pull,push")
    status, challenge = federation.peer_status("POST", "/v2/unclaimed/app/blobs/uploads/", unclaimed)
    assert status == 401 and "insufficient_scope" in challenge


def test_distribution_refuses_tokens_for_another_audience(federation):
    for_stevedore_itself = federation.stevedore_token(
        "fleet-user", "repository:fleet/app:pull", service=urllib.parse.urlparse(federation.stevedore_url).netloc
    )
    assert federation.peer_status("GET", "/v2/fleet/app/tags/list", for_stevedore_itself)[0] == 401


def test_skopeo_copies_to_and_from_distribution_with_a_stevedore_account(federation, containers_conf_dir, tmp_path):
    skopeo = Skopeo(federation.as_user("fleet-user"), containers_conf_dir, tmp_path / "skopeo")
    layout = tmp_path / "layout"
    image = images.oci_layout(layout, [4096, 70_000], "federation-skopeo")
    skopeo("copy", "--format", "oci", *skopeo.dest(), f"oci:{layout}:latest", skopeo.ref("fleet/skopeo:v1"))
    assert skopeo.inspect_raw("fleet/skopeo:v1") == image.manifest.data
    assert "v1" in skopeo.inspect("fleet/skopeo:v1")["RepoTags"]
    skopeo("copy", *skopeo.src(), skopeo.ref("fleet/skopeo:v1"), f"oci:{tmp_path / 'back'}:v1")

    wrong = Skopeo(federation.as_user("fleet-user", "not the password"), containers_conf_dir, tmp_path / "wrong")
    wrong.fails("inspect", *wrong.remote(), "--raw", wrong.ref("fleet/skopeo:v1"))
    disabled = Skopeo(federation.as_user("fleet-leaver"), containers_conf_dir, tmp_path / "disabled")
    disabled.fails("inspect", *disabled.remote(), "--raw", disabled.ref("fleet/skopeo:v1"))


def test_docker_logs_in_pushes_and_pulls_through_distribution_with_a_stevedore_account(federation, dockerd, tmp_path):
    registry = federation.as_user("fleet-user")
    docker = DockerCLI(dockerd, tmp_path / "docker-config", registry)
    ref = f"{registry.host}/fleet/docker:v1"
    archive = images.docker_archive(tmp_path / "image.tar", [1 << 20, 2048], "federation-docker", [ref])
    assert "Login Succeeded" in docker.login().out
    # docker kept Stevedore's refresh token as its identity token, not the password
    entry = docker.config()["auths"][registry.host]
    assert entry.get("identitytoken")
    docker("load", "-i", str(archive.path), timeout=300)
    docker("push", ref, timeout=300)
    docker("rmi", ref)
    docker("pull", ref, timeout=300)
    docker("logout", registry.host)
    docker.fails("pull", ref, timeout=120)

    leaver = DockerCLI(dockerd, tmp_path / "leaver-config", federation.as_user("fleet-leaver"))
    assert leaver.login(check=False).rc != 0

"""Two Stevedore nodes over one PostgreSQL database and one bucket: an upload started on one node goes on and ends on
the other, a blob pushed through one is mounted through the other, and a token or a page session one node issued
works on the other (they share the secret and the token signing keys)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import urllib.parse
import urllib.request

import pytest

from tests.integration.durability.helpers import Client, path_of, sha256
from tests.integration.protocol.helpers import parse_challenge
from tests.integration.scaleout.conftest import PASSWORD, USERNAME, Fleet, served
from tests.integration.scaleout.helpers import check_s3_consistency

pytestmark = [pytest.mark.scaleout, pytest.mark.s3, pytest.mark.postgres, pytest.mark.server]

MiB = 1024 * 1024
OCTETS = {"Content-Type": "application/octet-stream"}


def clients(fleet: Fleet) -> tuple[Client, Client]:
    return Client(fleet.nodes[0].host, USERNAME, PASSWORD), Client(fleet.nodes[1].host, USERNAME, PASSWORD)


def assert_served_everywhere(fleet: Fleet, repository: str, data: bytes) -> None:
    digest = sha256(data)
    for client in clients(fleet):
        status, headers, _ = client.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        assert (status, headers["Docker-Content-Digest"], headers["Content-Length"]) == (200, digest, str(len(data)))
        status, headers, body = client.request("GET", f"/v2/{repository}/blobs/{digest}")
        if status == 307:  # a presigned URL of the bucket: fetched without our credentials, as clients do
            with urllib.request.urlopen(headers["Location"], timeout=60) as redirected:
                status, body = redirected.status, redirected.read()
        assert status == 200, (client.host, status, body[:300])
        assert (len(body), sha256(body)) == (len(data), digest), client.host


@pytest.mark.parametrize("first", [0, 1], ids=["A-then-B", "B-then-A"])
def test_an_upload_started_on_one_node_goes_on_and_ends_on_the_other(fleet: Fleet, first: int) -> None:
    """POST and the first PATCH on one node, the second PATCH and the closing PUT (with a last chunk) on the other.
    The first PATCH fills a whole S3 part (5 MiB) and leaves a tail; the other node, without the running hash, has
    to carry on from the bucket's state and read the blob back to check its digest."""
    starter, finisher = clients(fleet)[first], clients(fleet)[1 - first]
    repository = f"scaleout/split-{first}"
    data = os.urandom(6 * MiB + 12345)
    first_chunk, second_chunk, last_chunk = data[: 5 * MiB + 100], data[5 * MiB + 100 : -1000], data[-1000:]

    upload = starter.start_upload(repository)
    status, headers, body = starter.request(
        "PATCH", upload, first_chunk, {**OCTETS, "Content-Range": f"0-{len(first_chunk) - 1}"}
    )
    assert (status, headers["Range"]) == (202, f"0-{len(first_chunk) - 1}"), body
    upload = path_of(headers["Location"])

    # The other node sees the upload where the first one left it.
    status, headers, _ = finisher.request("GET", upload)
    assert (status, headers["Range"]) == (204, f"0-{len(first_chunk) - 1}")
    end = len(first_chunk) + len(second_chunk)
    status, headers, body = finisher.request(
        "PATCH", upload, second_chunk, {**OCTETS, "Content-Range": f"{len(first_chunk)}-{end - 1}"}
    )
    assert (status, headers["Range"]) == (202, f"0-{end - 1}"), body
    upload = path_of(headers["Location"])
    separator = "&" if "?" in upload else "?"
    status, headers, body = finisher.request("PUT", f"{upload}{separator}digest={sha256(data)}", last_chunk, OCTETS)
    assert (status, headers["Docker-Content-Digest"]) == (201, sha256(data)), body

    assert_served_everywhere(fleet, repository, data)
    # Each node served its half: the requests went where the test sent them.
    assert served(fleet.node_logs[first], rf"PATCH /v2/{repository}/blobs/uploads/\S+ 202") == 1
    assert served(fleet.node_logs[1 - first], rf"PUT /v2/{repository}/blobs/uploads/\S+ 201") == 1


def test_a_wrong_digest_at_the_other_node_is_refused_and_the_upload_can_still_end_right(fleet: Fleet) -> None:
    node_a, node_b = clients(fleet)
    repository = "scaleout/split-mismatch"
    data = os.urandom(5 * MiB + 4096)
    upload = node_a.start_upload(repository)
    status, headers, _ = node_a.request("PATCH", upload, data, {**OCTETS, "Content-Range": f"0-{len(data) - 1}"})
    assert status == 202
    upload = path_of(headers["Location"])
    separator = "&" if "?" in upload else "?"
    status, _, body = node_b.request("PUT", f"{upload}{separator}digest={sha256(b'something else')}")
    assert status == 400 and b"DIGEST_INVALID" in body, (status, body)
    assert node_b.head_blob(repository, sha256(b"something else")) == 404
    status, _, body = node_b.request("PUT", f"{upload}{separator}digest={sha256(data)}")
    assert status == 201, body
    assert_served_everywhere(fleet, repository, data)


def test_a_blob_pushed_through_one_node_is_mounted_through_the_other(fleet: Fleet) -> None:
    node_a, node_b = clients(fleet)
    data = os.urandom(300 * 1024)
    assert node_a.push_blob("scaleout/mono", data) == 201  # POST, one PATCH, PUT, all on A
    status, headers, body = node_b.request(
        "POST", f"/v2/scaleout/mounted/blobs/uploads/?mount={sha256(data)}&from=scaleout/mono"
    )
    assert (status, headers["Docker-Content-Digest"]) == (201, sha256(data)), body
    assert_served_everywhere(fleet, "scaleout/mounted", data)
    # A mount copies nothing: one object in the bucket for that blob.
    found = check_s3_consistency(fleet.database_url, fleet.store())
    assert found.ok, found.problems


def test_a_token_from_one_node_is_honoured_by_the_other(fleet: Fleet) -> None:
    node_a, node_b = (f"http://{node.host}" for node in fleet.nodes)
    with pytest.raises(urllib.error.HTTPError) as challenged:
        urllib.request.urlopen(f"{node_a}/v2/", timeout=30)
    scheme, params = parse_challenge(challenged.value.headers["WWW-Authenticate"])
    assert scheme == "Bearer" and params["realm"].startswith(node_a)
    query = urllib.parse.urlencode({"service": params["service"], "scope": "repository:scaleout/token:push,pull"})
    request = urllib.request.Request(
        f"{params['realm']}?{query}", headers=Client(fleet.nodes[0].host, USERNAME, PASSWORD).auth
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())["token"]
    # Without a public URL a node's service name is the Host it was called by: send node A's Host to node B, as a
    # load balancer in front of both would.
    request = urllib.request.Request(
        f"{node_b}/v2/scaleout/token/blobs/uploads/",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Host": fleet.nodes[0].host},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
    assert served(fleet.node_logs[1], r"POST /v2/scaleout/token/blobs/uploads/ 202") == 1


def test_a_page_session_from_one_node_is_honoured_by_the_other(fleet: Fleet) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    node_a, node_b = (f"http://{node.host}" for node in fleet.nodes)
    with opener.open(f"{node_a}/login", timeout=30) as page:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
    assert csrf
    form = urllib.parse.urlencode({"username": USERNAME, "password": PASSWORD, "csrf_token": csrf.group(1)}).encode()
    with opener.open(f"{node_a}/login", data=form, timeout=30) as landed:
        assert landed.status == 200
    # Cookies are not port-bound: the jar sends node A's session cookie to node B.
    with opener.open(f"{node_b}/", timeout=30) as home:
        text = home.read().decode()
    assert USERNAME in text and "Log out" in text, text[:2000]
    assert served(fleet.node_logs[1], r"GET / 200 ") == 1  # node B answered it

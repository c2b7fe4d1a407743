"""Pulls from S3: a blob GET answers 307 to a presigned URL signed for the public endpoint (here `localhost`, while the
app talks to `127.0.0.1`), which urllib follows to moto, Range included; with `s3_redirect = false` the app streams,
ranges too. The permission and the database decide before any redirect; the signature never reaches the request
log. Uploads advertise the part size as OCI-Chunk-Min-Length (the folder store's absence is in
tests/integration/protocol/test_chunk_min_length.py). skopeo pushes to a node on S3 and pulls through the redirect."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import webtest

from stevedore.adapters.blobs_s3 import S3BlobStore, make_s3_client
from stevedore.web.app import build_blob_store, build_components, make_app
from stevedore.web.settings import Settings, SettingsError
from tests.integration.clients import images
from tests.integration.protocol.helpers import digest, error_codes, path_of, push_blob
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS, MotoServer
from tests.integration.services import WaitressProcess, free_port, write_ini

pytestmark = [pytest.mark.s3, pytest.mark.server]

DATA = bytes(range(256)) * 13  # 3,328 bytes: three parts of 1 KiB and a tail
PASSWORD = "pull it through the bucket"


def public_endpoint(moto_server: MotoServer) -> str:
    """The same moto server under another name than the app's endpoint, as a public endpoint would be."""
    return f"http://localhost:{moto_server.port}"


def presign_client(moto_server: MotoServer) -> object:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    return make_s3_client(
        endpoint_url=public_endpoint(moto_server),
        region="us-east-1",
        addressing="path",
        session=session,
        signature_version="s3v4",
    )


@pytest.fixture
def redirecting_store(moto_server, bucket):
    return S3BlobStore(
        moto_server.client(), bucket, "registry", part_size=1024, presign_client=presign_client(moto_server)
    )


@pytest.fixture
def redirecting_app(settings, redirecting_store) -> Iterator[webtest.TestApp]:
    components = build_components(settings, blob_store=redirecting_store)
    yield webtest.TestApp(make_app(components))
    components.engine.dispose()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """GET `url` as a client following the redirect would; the headers are looked up case-insensitively."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as answer:
        return answer.status, answer.headers, answer.read()


def test_a_get_is_a_307_to_a_short_lived_url_for_the_public_endpoint_that_serves_the_bytes(
    redirecting_app, user, auth, moto_server
):
    blob = push_blob(redirecting_app, auth, "s3/pulls", DATA)
    answer = redirecting_app.get(f"/v2/s3/pulls/blobs/{blob}", headers=auth, status=307)
    assert answer.headers["Docker-Content-Digest"] == blob
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.body == b""
    url = answer.headers["Location"]
    parts = urlsplit(url)
    assert parts.netloc == f"localhost:{moto_server.port}"  # the public endpoint, not the app's 127.0.0.1
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query
    status, _, body = fetch(url)
    assert (status, body) == (200, DATA)

    # HEADs stay answered from the database: no redirect, no request to S3
    head = redirecting_app.head(f"/v2/s3/pulls/blobs/{blob}", headers=auth, status=200)
    assert head.headers["Content-Length"] == str(len(DATA))
    assert head.headers["Docker-Content-Digest"] == blob


def test_a_range_get_is_redirected_and_the_bucket_answers_the_range(redirecting_app, user, auth):
    blob = push_blob(redirecting_app, auth, "s3/ranges", DATA)
    answer = redirecting_app.get(
        f"/v2/s3/ranges/blobs/{blob}", headers={**auth, "Range": "bytes=1000-2099"}, status=307
    )
    status, headers, body = fetch(answer.headers["Location"], {"Range": "bytes=1000-2099"})
    assert status == 206
    assert body == DATA[1000:2100]
    assert headers["Content-Range"] == f"bytes 1000-2099/{len(DATA)}"
    # a range the blob cannot satisfy is refused by the app (the size is in the database), with no redirect
    refused = redirecting_app.get(f"/v2/s3/ranges/blobs/{blob}", headers={**auth, "Range": "bytes=9000-"}, status=416)
    assert refused.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert "Location" not in refused.headers


def test_no_redirect_without_the_right_or_for_a_blob_not_in_the_repository(redirecting_app, user, auth):
    blob = push_blob(redirecting_app, auth, "s3/mine", DATA)
    anonymous = redirecting_app.get(f"/v2/s3/mine/blobs/{blob}", status=401)
    assert "Location" not in anonymous.headers
    elsewhere = redirecting_app.get(f"/v2/s3/other/blobs/{blob}", headers=auth, status=404)
    assert error_codes(elsewhere) == ["BLOB_UNKNOWN"]
    assert "Location" not in elsewhere.headers


def test_the_signature_stays_out_of_the_request_log(redirecting_app, user, auth, caplog):
    blob = push_blob(redirecting_app, auth, "s3/logged", DATA)
    with caplog.at_level(logging.INFO):
        answer = redirecting_app.get(f"/v2/s3/logged/blobs/{blob}", headers=auth, status=307)
    signature = parse_qs(urlsplit(answer.headers["Location"]).query)["X-Amz-Signature"][0]
    logged = [record.getMessage() for record in caplog.records if record.name == "stevedore.requests"]
    assert any(f"GET /v2/s3/logged/blobs/{blob} 307" in line for line in logged)
    assert signature not in caplog.text
    assert "X-Amz-" not in caplog.text


def s3_settings(settings: Settings, bucket: str, moto_server: MotoServer, **extra: str) -> Settings:
    parsed = Settings.from_mapping(
        {
            **settings.raw,
            "stevedore.storage_url": f"s3://{bucket}/registry",
            "stevedore.s3_endpoint_url": moto_server.endpoint_url,
            "stevedore.s3_region": "us-east-1",
            "stevedore.s3_addressing": "path",
            "stevedore.s3_part_size_mib": "5",
            **extra,
        },
        environ={"STEVEDORE_SECRET_KEY": "s" * 64},
    )
    names = [f.name for f in dataclasses.fields(Settings) if f.name.startswith("s3_")] + ["storage_url"]
    return dataclasses.replace(settings, **{name: getattr(parsed, name) for name in names})


@pytest.fixture
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_the_settings_redirect_by_default_signed_for_the_public_endpoint(
    settings, bucket, moto_server, aws_credentials, user, auth
):
    configured = s3_settings(
        settings,
        bucket,
        moto_server,
        **{"stevedore.s3_public_endpoint_url": public_endpoint(moto_server), "stevedore.s3_presign_seconds": "120"},
    )
    assert (configured.s3_redirect, configured.s3_presign_seconds) == (True, 120)
    store = build_blob_store(configured)
    assert isinstance(store, S3BlobStore)
    components = build_components(configured, blob_store=store)
    try:
        app = webtest.TestApp(make_app(components))
        blob = push_blob(app, auth, "s3/configured", DATA)
        url = app.get(f"/v2/s3/configured/blobs/{blob}", headers=auth, status=307).headers["Location"]
        assert urlsplit(url).netloc == f"localhost:{moto_server.port}"
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
        assert fetch(url)[2] == DATA
        # without a public endpoint the URL is signed for the app's own endpoint
        default = build_blob_store(s3_settings(settings, bucket, moto_server))
        assert isinstance(default, S3BlobStore)
        own = default.download_url(digest(DATA), "objects/x")
        assert own is not None and urlsplit(own).netloc == f"127.0.0.1:{moto_server.port}"
        assert parse_qs(urlsplit(own).query)["X-Amz-Expires"] == ["300"]
    finally:
        components.engine.dispose()


def test_with_s3_redirect_false_the_app_streams_with_ranges(settings, bucket, moto_server, aws_credentials, user, auth):
    configured = s3_settings(settings, bucket, moto_server, **{"stevedore.s3_redirect": "false"})
    store = build_blob_store(configured)
    assert isinstance(store, S3BlobStore) and store.presign_client is None
    store.part_size = 1024  # the settings' minimum is 5 MiB; small parts keep the test small
    components = build_components(configured, blob_store=store)
    try:
        app = webtest.TestApp(make_app(components))
        blob = push_blob(app, auth, "s3/streamed", DATA)
        whole = app.get(f"/v2/s3/streamed/blobs/{blob}", headers=auth, status=200)
        assert whole.body == DATA
        assert "Location" not in whole.headers
        ranged = app.get(f"/v2/s3/streamed/blobs/{blob}", headers={**auth, "Range": "bytes=1000-2099"}, status=206)
        assert ranged.body == DATA[1000:2100]
        assert ranged.headers["Content-Range"] == f"bytes 1000-2099/{len(DATA)}"
        tail = app.get(f"/v2/s3/streamed/blobs/{blob}", headers={**auth, "Range": "bytes=-100"}, status=206)
        assert tail.body == DATA[-100:]
    finally:
        components.engine.dispose()


@pytest.mark.parametrize(
    "key, value",
    [
        ("stevedore.s3_presign_seconds", "0"),
        ("stevedore.s3_presign_seconds", "604801"),
        ("stevedore.s3_public_endpoint_url", "s3.example.com"),
    ],
)
def test_bad_presign_settings_are_refused_with_a_reason(settings, bucket, moto_server, key, value):
    with pytest.raises(SettingsError, match=key.split(".")[1]):
        s3_settings(settings, bucket, moto_server, **{key: value})


def test_uploads_advertise_the_part_size_as_the_minimum_chunk(testapp, auth, s3_store):
    start = testapp.post("/v2/s3/chunks/blobs/uploads/", headers={**auth, "Content-Length": "0"}, status=202)
    assert start.headers["OCI-Chunk-Min-Length"] == "1024" == str(s3_store.part_size)
    patched = testapp.request(
        path_of(start.headers["Location"]),
        method="PATCH",
        body=DATA[:1024],
        headers={**auth, "Content-Type": "application/octet-stream", "Content-Range": "0-1023"},
        status=202,
    )
    assert patched.headers["OCI-Chunk-Min-Length"] == "1024"
    assert patched.headers["Range"] == "0-1023"
    # smaller chunks still work (the tail buffers them): the header is advice
    patched = testapp.request(
        path_of(patched.headers["Location"]),
        method="PATCH",
        body=DATA[1024:1100],
        headers={**auth, "Content-Type": "application/octet-stream", "Content-Range": "1024-1099"},
        status=202,
    )
    assert patched.headers["Range"] == "0-1099"


# --- a real client: skopeo pushes to a node on S3 and pulls through the redirect -----------------------------------


def _skopeo(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("skopeo")
    assert binary, "skopeo is not installed: run scripts/install-client-tools.sh"
    return subprocess.run(
        [binary, "--policy", str(conf / "policy.json"), "--registries-conf", str(conf / "registries.conf"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": str(conf), "REGISTRY_AUTH_FILE": str(conf / "no-auth.json")},
    )


@pytest.mark.clients
def test_skopeo_pulls_an_image_through_the_redirect(moto_server, bucket, tmp_path):
    port = free_port()
    ini = str(tmp_path / "node.ini")
    write_ini(
        ini,
        database_url=f"sqlite:///{tmp_path}/stevedore.sqlite",
        storage_dir=str(tmp_path / "unused-blobs"),  # STEVEDORE_STORAGE_URL (s3://) wins
        port=port,
        extra=(
            "stevedore.s3_region = us-east-1\nstevedore.s3_addressing = path\n"
            f"stevedore.s3_public_endpoint_url = {public_endpoint(moto_server)}\n"
        ),
    )
    text = Path(ini).read_text().replace("[loggers]\nkeys = root\n", "[loggers]\nkeys = root, requests\n")
    Path(ini).write_text(text + "\n[logger_requests]\nlevel = INFO\nhandlers =\nqualname = stevedore.requests\n")
    env = {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "STEVEDORE_STORAGE_URL": f"s3://{bucket}/registry",
        "STEVEDORE_S3_ENDPOINT_URL": moto_server.endpoint_url,
    }
    for args, stdin in ((("db", "upgrade"), None), (("user", "create", "puller", "--password-stdin"), f"{PASSWORD}\n")):
        done = subprocess.run(
            [sys.executable, "-m", "stevedore.cli", "--config", ini, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
    conf = tmp_path / "containers"
    conf.mkdir()
    (conf / "registries.conf").write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    (conf / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    layout = tmp_path / "layout"
    image = images.oci_layout(layout, [1 << 20, 300], "s3-redirect", tag="v1")
    remote = f"docker://127.0.0.1:{port}/s3/skopeo:v1"
    server = WaitressProcess(ini, port, str(tmp_path / "server.log"), env=env)
    server.start()
    try:
        pushed = _skopeo(
            conf, "copy", "--dest-tls-verify=false", "--dest-creds", f"puller:{PASSWORD}", f"oci:{layout}:v1", remote
        )
        assert pushed.returncode == 0, pushed.stderr
        pulled_layout = tmp_path / "pulled"
        pulled = _skopeo(
            conf,
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"puller:{PASSWORD}",
            remote,
            f"oci:{pulled_layout}:v1",
        )
        assert pulled.returncode == 0, pulled.stderr
    finally:
        server.stop()
    for blob in [image.config, *image.layers]:
        assert images.read_layout_blob(pulled_layout, blob.digest) == blob.data
    log = (tmp_path / "server.log").read_text(errors="replace")
    redirected = [line for line in log.splitlines() if re.search(r"GET /v2/s3/skopeo/blobs/sha256:\w+ 307 ", line)]
    assert len(redirected) >= 3, log[-3000:]  # the config and both layers came from the bucket
    assert "X-Amz-Signature" not in log

"""moto's S3 server (`moto_server`, a real HTTP endpoint) on a free loopback port, for the S3 blob store's tests.

moto refuses parts under 5 MiB like S3 does; S3_UPLOAD_PART_MIN_SIZE lowers that in the server so tests can make
thousands of small parts. Credentials are dummies given to the boto3 client directly, never the environment's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
import pytest

from stevedore.adapters.blobs_s3 import S3BlobStore, make_s3_client
from tests.integration.services import free_port

MIN_PART_SIZE = 1024  # moto's minimum part size in these tests (S3's is 5 MiB)
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _moto_server_command() -> list[str]:
    found = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed: `pip install -e .[testing]` (make test) installs it")
    return [found]


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="stevedore-moto-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(MIN_PART_SIZE), **DUMMY_CREDENTIALS}
        self.process = subprocess.Popen(
            [*_moto_server_command(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=self.log,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.log.name) as log:
                    raise RuntimeError(f"moto_server exited: {log.read()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start in 60 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, **options: Any) -> Any:
        """A boto3 client with dummy credentials and few, quick retries (a stopped server answers fast)."""
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        return make_s3_client(
            endpoint_url=self.endpoint_url,
            region="us-east-1",
            addressing="path",
            session=session,
            **{"max_attempts": 2, "connect_timeout": 2, "read_timeout": 10, **options},
        )

    def new_bucket(self) -> str:
        name = f"stevedore-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def store(self, bucket: str, *, part_size: int = MIN_PART_SIZE, prefix: str = "registry") -> S3BlobStore:
        return S3BlobStore(self.client(), bucket, prefix, part_size=part_size)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    server.start()
    yield server
    server.stop()

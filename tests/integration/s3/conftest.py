"""Fixtures of the S3 tests: one moto_server for the session, and the app over it (parts of 1 KiB)."""

from __future__ import annotations

import pytest

from stevedore.web.app import build_components
from tests.integration.protocol.helpers import basic
from tests.integration.s3.moto_server import moto_server  # noqa: F401 - a fixture


@pytest.fixture
def bucket(moto_server):  # noqa: F811
    return moto_server.new_bucket()


@pytest.fixture
def s3_store(moto_server, bucket):  # noqa: F811
    return moto_server.store(bucket, part_size=1024)


@pytest.fixture
def components(settings, s3_store):
    """The app's components with the S3 store instead of the settings' folder."""
    components = build_components(settings, blob_store=s3_store)
    yield components
    components.engine.dispose()


@pytest.fixture
def auth(user):
    return basic(*user)

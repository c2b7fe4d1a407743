"""Fixtures of the S3 tests: one moto_server for the session."""

from tests.integration.s3.moto_server import moto_server  # noqa: F401 - a fixture

"""Protocol-test fixtures on top of tests/integration/conftest.py."""

import pytest

from tests.integration.protocol.helpers import basic


@pytest.fixture
def auth(user):
    """Basic credentials of the `user` fixture, as request headers."""
    return basic(*user)

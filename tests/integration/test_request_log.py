"""The request log (`stevedore.requests`): one line per request that a client cannot forge, colour or split."""

from __future__ import annotations

import logging
import re

import pytest

from tests.integration.protocol.helpers import basic

# What the log may hold: printable ASCII, fields separated by single spaces.
PRINTABLE_LINE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


def logged_lines(testapp, caplog, requests):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stevedore.requests"):
        for path, kwargs in requests:
            testapp.get(path, status="*", **kwargs)
    return [record.getMessage() for record in caplog.records if record.name == "stevedore.requests"]


def test_control_characters_in_the_path_cannot_forge_a_line(testapp, user, caplog):
    lines = logged_lines(
        testapp,
        caplog,
        [
            ("/v2/x%0aFAKE%20200/manifests/latest", {}),
            ("/v2/x%0d%0aGET%20/v2/%20200/manifests/latest", {"headers": basic(*user)}),
            ("/v2/x%1b[31mred/tags/list", {"headers": basic(*user)}),
            ("/v2/x%00y/tags/list", {"headers": basic(*user)}),
            ("/v2/back%5Cslash/tags/list", {"headers": basic(*user)}),
            ("/v2/_catalog?last=a%0ab&n=%1b", {"headers": basic(*user)}),
        ],
    )
    assert len(lines) == 6
    for line in lines:
        assert PRINTABLE_LINE.fullmatch(line), line
        assert len(line.split(" ")) == 6, line  # method, path?query, status, bytes, seconds, user
    assert lines[0].startswith("GET /v2/x\\x0aFAKE\\x20200/manifests/latest 401 ")
    assert lines[1].startswith("GET /v2/x\\x0d\\x0aGET\\x20/v2/\\x20200/manifests/latest 400 ")
    assert lines[1].endswith(" alice")
    assert lines[2].startswith("GET /v2/x\\x1b[31mred/tags/list 400 ")
    assert lines[3].startswith("GET /v2/x\\x00y/tags/list 400 ")
    assert lines[4].startswith("GET /v2/back\\x5cslash/tags/list 400 ")  # a backslash is escaped too: unambiguous
    assert lines[5].startswith("GET /v2/_catalog?last=a%0ab&n=%1b 400 ")  # the query string stays as it was sent


@pytest.mark.filterwarnings("ignore::webtest.lint.WSGIWarning")  # the forged method, on purpose
def test_bytes_that_are_not_utf8_are_logged_as_the_bytes_they_were(testapp, user, caplog):
    raw = "/v2/\xff\xfe/tags/list"  # PEP 3333: PATH_INFO holds the request's raw bytes as latin-1
    lines = logged_lines(
        testapp,
        caplog,
        [
            ("/v2/%ff/tags/list", {"headers": basic(*user)}),
            ("/ignored", {"headers": basic(*user), "extra_environ": {"PATH_INFO": raw}}),
            ("/v2/caf%c3%a9/tags/list", {"headers": basic(*user)}),
            ("/v2/?a=\x1b[0m\\", {"headers": basic(*user)}),  # raw, as a lax client or server may pass it
            ("/v2/", {"headers": basic(*user), "extra_environ": {"REQUEST_METHOD": "GET\nFAKE"}}),
        ],
    )
    assert len(lines) == 5
    for line in lines:
        assert PRINTABLE_LINE.fullmatch(line), line
    assert lines[0].startswith("GET /v2/\\xff/tags/list 400 ")
    assert lines[1].startswith("GET /v2/\\xff\\xfe/tags/list 400 ")
    assert lines[2].startswith("GET /v2/caf\\xc3\\xa9/tags/list 400 ")  # UTF-8, byte by byte, as nginx logs it
    assert lines[3].startswith("GET /v2/?a=\\x1b[0m\\x5c 200 ")
    assert lines[4].startswith("GET\\x0aFAKE /v2/ ")

"""First real-browser tests: the harness itself works (server, chromium, screenshots, SMTP sink), so the end-to-end
journey of the web index can be built on it."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.browser.conftest import save_screenshot
from tests.integration.services import stevedore_cli

pytestmark = [pytest.mark.browser, pytest.mark.server]


def test_the_front_page_renders_in_chromium_and_is_saved_as_a_screenshot(browser_server, page, screenshots):
    response = page.goto(browser_server.url + "/")
    assert response is not None and response.status == 200
    assert page.locator("h1").first.inner_text().strip()
    assert page.title()
    path = save_screenshot(page, screenshots, "front-page")
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (screenshots / "front-page-phone.png").stat().st_size > 1000


def test_an_invite_made_on_the_command_line_is_mailed_with_a_link_built_from_the_public_url(browser_server):
    sink = browser_server.sink
    before = len(sink.messages)
    result = stevedore_cli(browser_server.ini_path, "invite", "create", "--email", "newcomer@example.com")
    assert result.returncode == 0, result.stderr
    printed = re.search(r"^sign-up URL: (\S+)$", result.stdout, re.M)
    assert printed, result.stdout
    assert "mailed to: newcomer@example.com" in result.stdout

    message = sink.wait_for(before + 1)[before]
    assert message["To"] == "newcomer@example.com" and message["From"] == "registry@example.com"
    body = message.get_content()
    [link] = re.findall(r"https?://\S+/users/sign_up\?\S+", body)
    assert link == printed.group(1)
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == browser_server.url
    assert parts.path == "/users/sign_up" and len(parse_qs(parts.query)["invite"][0]) >= 32

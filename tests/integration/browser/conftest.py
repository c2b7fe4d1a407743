"""The real-browser harness: a waitress server of its own, an SMTP sink it sends mail through, and Debian's
chromium driven headless by Playwright (never a downloaded browser).

Screenshots go to `test-output/screenshots/` at the top of the repository (git-ignored): they outlive the run, so
whoever finishes a page can open them. Every test module here marks itself `browser` and `server`, so the fast loop
(`-m "not postgres and not clients and not server"`) leaves them out and `make test` runs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.mail_sink import SmtpSink
from tests.integration.services import REPO_ROOT, WaitressProcess, free_port, stevedore_cli, write_ini

CHROMIUM = os.environ.get("STEVEDORE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(REPO_ROOT) / "test-output" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class BrowserServer:
    """A Stevedore served by waitress, configured to send its mails to `sink`, with `url` as its public URL."""

    url: str
    ini_path: str
    sink: SmtpSink
    log_path: str


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def browser_server(tmp_path_factory: pytest.TempPathFactory, smtp_sink: SmtpSink) -> Iterator[BrowserServer]:
    base = tmp_path_factory.mktemp("browser")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ini = str(base / "browser.ini")
    write_ini(
        ini,
        database_url=f"sqlite:///{base}/stevedore.sqlite",
        storage_dir=str(base / "blobs"),
        port=port,
        extra=(
            f"stevedore.public_url = {url}\n"
            "stevedore.mail.smtp_host = 127.0.0.1\n"
            f"stevedore.mail.smtp_port = {smtp_sink.port}\n"
            "stevedore.mail.smtp_security = none\n"
            "stevedore.mail.from = registry@example.com\n"
        ),
    )
    upgraded = stevedore_cli(ini, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    log_path = str(base / "server.log")
    server = WaitressProcess(ini, port, log_path)
    server.start()
    try:
        yield BrowserServer(url=url, ini_path=ini, sink=smtp_sink, log_path=log_path)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no chromium at {CHROMIUM}: run scripts/install-client-tools.sh (or set STEVEDORE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # As root, chromium refuses to start with its sandbox (containers, CI): the pages are our own.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object) -> Iterator[object]:
    """A fresh browser context (no cookies) and page at desktop size."""
    context = chromium.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)  # only this run's pictures
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


def save_screenshot(page: object, folder: Path, name: str) -> Path:
    """A full-page PNG at `folder/name.png`, at the page's size, then at phone width (`name-phone.png`)."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    size = page.viewport_size  # type: ignore[attr-defined]
    page.set_viewport_size(PHONE)  # type: ignore[attr-defined]
    page.screenshot(path=str(folder / f"{name}-phone.png"), full_page=True)  # type: ignore[attr-defined]
    page.set_viewport_size(size)  # type: ignore[attr-defined]
    return path

"""The end-to-end journey of the web index (issue 6, "Proof"), in Debian's chromium against a real waitress server,
with the SMTP sink and a real docker:

the setup URL from the server's log -> the first administrator -> an invite made on /invites -> the mail read from
the sink -> a second user signs up with its link (a fresh browser) -> logs out and in -> a personal access token on
/tokens -> `docker login` with the token, a push into the user's own namespace and a refused push into the
administrator's -> the image on the repository page -> a tag deleted from the page -> a robot made on the namespace's
robots page pushes with its secret (and is refused elsewhere) -> the front page's latest pushes name the robot -> the
administrator's namespaces, users and account pages -> the audit log, as the administrator, shows each step.

Screenshots of the main pages go to test-output/screenshots/journey-*.png (and *-phone.png).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.browser.conftest import DESKTOP, save_screenshot
from tests.integration.clients import images
from tests.integration.clients.conftest import DockerCLI, Dockerd

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.clients]

# A slow, shared 2-core machine: generous waits, never sleeps as synchronization.
ACTION_MS = 60_000
NAVIGATION_MS = 120_000

ADMIN = "captain"
ADMIN_EMAIL = "captain@example.com"
ADMIN_PASSWORD = "the captain's long password"
MEMBER = "deckhand"
MEMBER_EMAIL = "deckhand@example.com"
MEMBER_PASSWORD = "the deckhand's long password"
KIB = 1 << 10


@dataclass
class TokenLogin:
    """What DockerCLI needs of a registry: where it is and the credentials `docker login` takes."""

    host: str
    username: str
    password: str


@pytest.fixture(scope="module")
def journey_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    daemon = Dockerd(tmp_path_factory.mktemp("journey-dockerd"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def new_page(chromium: object) -> tuple[object, object]:
    """A fresh browser context (no cookies) and a page in it, with waits fit for a slow machine."""
    context = chromium.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    context.set_default_timeout(ACTION_MS)
    context.set_default_navigation_timeout(NAVIGATION_MS)
    return context, context.new_page()


def setup_url_from_log(log_path: str, timeout: float = 60.0) -> str:
    """The one-time setup URL that the server printed on start (polled: the log is written by another process)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = Path(log_path).read_text(errors="replace")
        found = re.search(r"open (https?://\S+/setup\?code=\S+) to create the administrator", text)
        if found:
            return found.group(1)
        time.sleep(0.2)  # polling a file another process writes, not synchronization between our own steps
    raise AssertionError(f"the server printed no setup URL; its log ends with:\n{text[-3000:]}")


def goto(page: object, url: str, status: int = 200) -> None:
    response = page.goto(url, wait_until="load")  # type: ignore[attr-defined]
    assert response is not None, f"no response for {url}"
    assert response.status == status, f"{url}: HTTP {response.status}, expected {status}\n{page.content()[:2000]}"  # type: ignore[attr-defined]


def submit(page: object, button_name: str) -> None:
    """Click a form's submit button and wait for the page that the post leads to."""
    with page.expect_navigation(wait_until="load"):  # type: ignore[attr-defined]
        page.get_by_role("button", name=button_name, exact=True).click()  # type: ignore[attr-defined]


def signed_in_as(page: object) -> str:
    """The nav's account: the user name, then a badge for administrators."""
    return page.locator(".whoami").first.inner_text().strip()  # type: ignore[attr-defined]


AUDIT_COLUMNS = ("when", "who", "address", "action", "namespace", "target", "detail")


def audit_rows(page: object) -> list[dict[str, str]]:
    """The audit page's table, newest first, one dict per event."""
    rows = []
    for row in page.locator("table.list tbody tr").all():  # type: ignore[attr-defined]
        cells = [cell.inner_text().strip() for cell in row.locator("td").all()]
        rows.append(dict(zip(AUDIT_COLUMNS, cells, strict=True)))
    return rows


def test_from_the_setup_url_to_a_push_a_deleted_tag_and_the_audit_log(
    browser_server, chromium, screenshots, journey_dockerd, tmp_path
):
    base = browser_server.url
    host = base.split("://", 1)[1]
    sink = browser_server.sink
    contexts = []
    try:
        # --- the first administrator, from the setup URL the server printed ---------------------------------------
        setup_url = setup_url_from_log(browser_server.log_path)
        assert setup_url.startswith(base + "/setup?code="), setup_url
        admin_context, admin = new_page(chromium)
        contexts.append(admin_context)
        goto(admin, setup_url)
        admin.fill("#username", ADMIN)
        admin.fill("#email", ADMIN_EMAIL)
        admin.fill("#password", ADMIN_PASSWORD)
        admin.fill("#password_again", ADMIN_PASSWORD)
        save_screenshot(admin, screenshots, "journey-setup")
        submit(admin, "Create the administrator")
        assert admin.url.rstrip("/") == base, admin.url
        assert signed_in_as(admin).split()[0] == ADMIN
        assert admin.locator(".whoami .badge").count() == 1, "the first account is not shown as an administrator"
        # The code is used up: the setup page is gone.
        goto(admin, setup_url, status=404)

        # --- an invite by mail, from /invites ------------------------------------------------------------------
        mails_before = len(sink.messages)
        goto(admin, base + "/invites")
        admin.fill("#email", MEMBER_EMAIL)
        submit(admin, "Create the invite")
        admin.locator("#invite-link").wait_for()
        shown_link = admin.locator("#invite-link").input_value()
        assert admin.get_by_text(f"The sign-up link was mailed to {MEMBER_EMAIL}").is_visible()
        save_screenshot(admin, screenshots, "journey-invites")

        message = sink.wait_for(mails_before + 1, timeout=60)[mails_before]
        assert message["To"] == MEMBER_EMAIL, message["To"]
        links = re.findall(r"https?://\S+/users/sign_up\?invite=\S+", message.get_content())
        assert links == [shown_link], f"the mail's links {links} differ from the page's {shown_link}"
        assert links[0].startswith(base + "/users/sign_up?invite="), "the mailed link is not built from the public URL"

        # --- the invited person signs up with the mailed link, in a browser of their own ------------------------
        member_context, member = new_page(chromium)
        contexts.append(member_context)
        goto(member, links[0])
        assert member.locator("#email").input_value() == MEMBER_EMAIL, "the invite's address is not filled in"
        member.fill("#username", MEMBER)
        member.fill("#password", MEMBER_PASSWORD)
        member.fill("#password_again", MEMBER_PASSWORD)
        save_screenshot(member, screenshots, "journey-signup")
        submit(member, "Create my account")
        assert member.url.rstrip("/") == base, f"sign-up did not lead home: {member.url}\n{member.content()[:2000]}"
        assert signed_in_as(member) == MEMBER

        # --- logs out, and in again at /login -----------------------------------------------------------------
        submit(member, "Log out")
        assert member.locator(".whoami").count() == 0, "still signed in after logging out"
        goto(member, base + "/login")
        member.fill("#username", MEMBER)
        member.fill("#password", MEMBER_PASSWORD)
        submit(member, "Log in")
        assert signed_in_as(member) == MEMBER, f"not logged in: {member.url}\n{member.content()[:2000]}"

        # --- a personal access token that may push -------------------------------------------------------------
        goto(member, base + "/tokens")
        member.fill("#name", "laptop docker")
        member.select_option("#scope", "push")
        submit(member, "Create the token")
        member.locator("#token-secret").wait_for()
        secret = member.locator("#token-secret").input_value()
        assert secret.startswith("stv_"), secret
        save_screenshot(member, screenshots, "journey-tokens")

        # --- docker login with the token, a push into the member's own namespace ---------------------------------
        docker = DockerCLI(journey_dockerd, tmp_path / "docker-config", TokenLogin(host, MEMBER, secret))
        login = docker.login()
        assert "Login Succeeded" in login.out, login.describe()
        own = f"{host}/{MEMBER}/webapp"
        archive = images.docker_archive(
            tmp_path / "image.tar", [64 * KIB, 4 * KIB], "journey", [f"{own}:v1", f"{own}:v2"]
        )
        docker("load", "-i", str(archive.path), timeout=300)
        docker("push", f"{own}:v1", timeout=300)
        docker("push", f"{own}:v2", timeout=300)

        # --- and a refused push into the administrator's namespace ---------------------------------------------
        theirs = f"{host}/{ADMIN}/webapp:v1"
        docker("tag", f"{own}:v1", theirs)
        refused = docker.fails("push", theirs, timeout=300)
        assert re.search(r"denied|unauthorized|forbidden", refused.err + refused.out, re.I), refused.describe()

        # --- the image on the repository page, and a tag deleted from it ----------------------------------------
        goto(member, f"{base}/r/{MEMBER}/webapp")
        assert member.locator("h1.name").inner_text().strip() == f"{MEMBER}/webapp"
        assert sorted(t.strip() for t in member.locator(".tag-name").all_inner_texts()) == ["v1", "v2"]
        pulls = member.locator("input.pull")
        assert f"docker pull {own}:v1" in [pulls.nth(i).input_value() for i in range(pulls.count())]
        save_screenshot(member, screenshots, "journey-repository")
        submit(member, "Delete tag v2")
        assert member.url.split("?")[0] == f"{base}/r/{MEMBER}/webapp", member.url
        assert "The tag v2 was deleted." in member.locator(".flash").all_inner_texts()
        assert [t.strip() for t in member.locator(".tag-name").all_inner_texts()] == ["v1"]

        # --- a robot of the member's namespace, made on its page, pushes with `docker login` as `deckhand+ci` -------
        goto(member, f"{base}/namespaces/{MEMBER}/robots")
        member.fill("#name", "ci")
        member.select_option("#scope", "push")
        submit(member, "Create the robot")
        member.locator("#robot-secret").wait_for()
        robot_secret = member.locator("#robot-secret").input_value()
        save_screenshot(member, screenshots, "journey-robots")
        robot = DockerCLI(journey_dockerd, tmp_path / "robot-config", TokenLogin(host, f"{MEMBER}+ci", robot_secret))
        assert "Login Succeeded" in robot.login().out
        robot("tag", f"{own}:v1", f"{own}:from-ci")
        robot("push", f"{own}:from-ci", timeout=300)
        refused = robot.fails("push", theirs, timeout=300)
        assert re.search(r"denied|unauthorized|forbidden", refused.err + refused.out, re.I), refused.describe()

        # --- the member's front page lists the latest pushes, with who pushed them -----------------------------
        goto(member, base + "/")
        front = member.locator("main").inner_text()
        assert f"{MEMBER}/webapp" in front and "from-ci" in front and f"{MEMBER}+ci" in front, front[:2000]
        save_screenshot(member, screenshots, "journey-home")
        goto(member, f"{base}/namespaces/{MEMBER}")
        save_screenshot(member, screenshots, "journey-namespace")

        # --- the administrator's pages: namespaces, users, their own account -----------------------------------
        goto(admin, f"{base}/namespaces")
        assert MEMBER in admin.locator("main").inner_text()
        save_screenshot(admin, screenshots, "journey-namespaces")
        goto(admin, f"{base}/users")
        users = admin.locator("main").inner_text()
        assert MEMBER in users and f"{MEMBER}+ci" not in users, "robots are listed among the users"
        save_screenshot(admin, screenshots, "journey-users")
        goto(admin, f"{base}/account")
        save_screenshot(admin, screenshots, "journey-account")

        # The refused push left no repository behind: the administrator, who sees everything, finds none.
        goto(admin, f"{base}/repositories")
        listed = admin.locator("main").inner_text()
        assert f"{MEMBER}/webapp" in listed
        assert f"{ADMIN}/webapp" not in listed, "a refused push left a repository behind"

        # --- the audit log, as the administrator, shows each step ---------------------------------------------
        goto(admin, f"{base}/audit")
        rows = audit_rows(admin)
        save_screenshot(admin, screenshots, "journey-audit")

        def seen(action: str, who: str, target: str | None = None) -> bool:
            return any(
                r["action"] == action and r["who"] == who and (target is None or target in r["target"]) for r in rows
            )

        shown = "\n".join(" | ".join(r.values()) for r in rows)
        for action, who, target in (
            ("setup", ADMIN, ADMIN),
            ("invite_created", ADMIN, None),
            ("signup", MEMBER, MEMBER),
            ("login", MEMBER, None),
            ("token_created", MEMBER, "laptop docker"),
            ("push", MEMBER, f"{MEMBER}/webapp@sha256:"),
            ("delete_tag", MEMBER, f"{MEMBER}/webapp:v2"),
            ("robot_created", MEMBER, f"{MEMBER}+ci"),
            ("push", f"{MEMBER}+ci", f"{MEMBER}/webapp@sha256:"),
        ):
            assert seen(action, who, target), f"the audit log lacks {action} by {who} ({target}):\n{shown}"
        # Newest first: the deletion came after the pushes, which came after the sign-up, which came after setup.
        order = [r["action"] for r in rows if r["who"] in (ADMIN, MEMBER)]
        assert order.index("robot_created") < order.index("delete_tag"), shown
        assert order.index("delete_tag") < order.index("push") < order.index("signup") < order.index("setup"), shown
        assert not seen("push", MEMBER, f"{ADMIN}/webapp"), f"a refused push is logged as a push:\n{shown}"
    finally:
        for context in contexts:
            context.close()  # type: ignore[attr-defined]

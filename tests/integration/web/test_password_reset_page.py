"""/password/forgot and /password/reset: the same answer for every asker, a link built from the public URL only (a
forged Host header changes nothing), single use, expiring, and ending every session and token of the old password."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables import accounts, web_sessions
from stevedore.adapters.sql.tables_access_tokens import access_tokens
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_password_resets import password_resets
from stevedore.web.ui.session import COOKIE_NAME
from tests.fakes import FixedClock, InMemoryMailer
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic
from tests.integration.web.helpers import PUBLIC_URL, csrf_token, log_in, mailing_settings

PASSWORD = "correct horse battery"
NEW = "a brand new password"
LINK = re.compile(r"(http://\S+/password/reset\?code=[A-Za-z0-9_-]+)")
SAME_ANSWER = "If an active account has that user name or e-mail address"


@pytest.fixture
def mail_folder(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def settings(database_url, tmp_path, mail_folder):
    """Like the shared fixture, with a public URL and the embedded default's .eml folder."""
    return mailing_settings(database_url, tmp_path, mail_folder, password_reset_minutes="30")


@pytest.fixture
def alice(make_user):
    return make_user("alice", PASSWORD, email="alice@example.com")


@pytest.fixture
def clock(components):
    components.clock = FixedClock(datetime.now(UTC))
    return components.clock


def mails(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]  # type: ignore[misc]


def body(mail) -> str:
    return mail.get_payload(decode=True).decode()


def forgot(app, name, status=200, headers=None):
    token = csrf_token(app.get("/password/forgot"))
    return app.post("/password/forgot", {"name": name, "csrf_token": token}, headers=headers or {}, status=status)


def mailed_link(folder) -> str:
    found = LINK.search(body(mails(folder)[-1]))
    assert found, "the mail has no reset link"
    return found.group(1)


def local(link: str) -> str:
    return link.replace(PUBLIC_URL, "")


def reset(app, link, password=NEW, again=None, status=200):
    page = app.get(local(link))
    form = {
        "code": link.split("code=")[1],
        "password": password,
        "password_again": password if again is None else again,
    }
    return app.post("/password/reset", {**form, "csrf_token": csrf_token(page)}, status=status)


def test_a_mailed_link_sets_a_new_password_and_ends_every_session_and_token(app, testapp, alice, mail_folder, db):
    elsewhere = webtest.TestApp(app)
    log_in(elsewhere, "alice", PASSWORD)
    elsewhere.post("/tokens", {"name": "ci", "scope": "push", "csrf_token": csrf_token(elsewhere.get("/tokens"))})
    page = forgot(testapp, "alice")
    assert SAME_ANSWER in page.text and "30 minutes" in page.text
    (mail,) = mails(mail_folder)
    assert mail["To"] == "alice@example.com" and "works once" in body(mail)
    link = mailed_link(mail_folder)
    assert link.startswith(f"{PUBLIC_URL}/password/reset?code=")
    code = link.split("code=")[1]
    assert code not in db.execute(sa.select(password_resets.c.code_hash)).scalar_one()
    form_page = testapp.get(local(link))
    assert "For the account <strong>alice</strong>" in form_page.text
    done = reset(testapp, link)
    assert "The password of alice is changed" in done.text
    elsewhere.get("/account", status=303)  # the other session ended
    assert count_rows(db, web_sessions.select().where(web_sessions.c.account_id.isnot(None)).subquery()) == 0
    assert db.execute(sa.select(access_tokens.c.revoked_at)).scalar_one() is not None
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=401)
    testapp.get("/v2/", headers=basic("alice", NEW), status=200)
    log_in(testapp, "alice", NEW)
    actions = db.execute(sa.select(audit_events.c.action, audit_events.c.target).order_by(audit_events.c.id)).all()
    assert ("password_reset_requested", "alice") in actions and ("password_reset", "alice") in actions


def test_a_used_link_gets_the_one_clear_answer(testapp, alice, mail_folder):
    forgot(testapp, "alice@EXAMPLE.com")
    link = mailed_link(mail_folder)
    reset(testapp, link)
    page = testapp.get(local(link), status=404)
    assert "not valid: it was used already, replaced by a newer one, or has expired" in page.text
    assert "Ask for a new link" in page.text
    token = csrf_token(testapp.get("/password/forgot"))
    again = testapp.post(
        "/password/reset",
        {"code": link.split("code=")[1], "password": "one more password", "password_again": "one more password",
         "csrf_token": token},
        status=404,
    )  # fmt: skip
    assert "used already" in again.text
    log_in(testapp, "alice", NEW)


def test_an_expired_a_superseded_and_a_forged_code_get_the_one_answer(testapp, alice, mail_folder, clock):
    forgot(testapp, "alice")
    first = mailed_link(mail_folder)
    clock.advance(minutes=6)
    forgot(testapp, "alice")
    second = mailed_link(mail_folder)
    assert first != second
    testapp.get(local(first), status=404)  # superseded
    for forged in ("forged", "", "x" * 300, "a%0Ab"):
        assert "not valid" in testapp.get(f"/password/reset?code={forged}", status=404).text
    testapp.get("/password/reset?code=%00", status=400)  # no page takes a NUL (web/page_input.py)
    testapp.get("/password/reset", status=404)
    clock.advance(minutes=31)
    assert "has expired" in testapp.get(local(second), status=404).text
    log_in(testapp, "alice", PASSWORD)


def test_every_asker_gets_the_same_answer_and_only_real_active_accounts_get_mail(
    testapp, alice, make_user, mail_folder, components
):
    make_user("bob", "bob's good password")  # no address
    carol = make_user("carol", "carol's good password", email="carol@example.com")
    assert carol.id
    with components.write_sessions() as session, session.begin():
        session.execute(sa.update(accounts).where(accounts.c.username == "carol").values(is_active=False))
    answers = {
        forgot(testapp, name).text.replace(csrf_token(testapp.get("/password/forgot")), "")
        for name in ("nobody", "bob", "carol", "carol@example.com", "x" * 500, "<script>", "alice")
    }
    assert len(answers) == 1 and SAME_ANSWER in answers.pop()
    (mail,) = mails(mail_folder)
    assert mail["To"] == "alice@example.com"


def test_asking_again_within_minutes_mails_nothing_more(testapp, alice, mail_folder, clock):
    forgot(testapp, "alice")
    clock.advance(minutes=1)
    assert SAME_ANSWER in forgot(testapp, "alice").text
    assert len(mails(mail_folder)) == 1


def test_a_forged_host_header_never_reaches_the_mailed_link(testapp, alice, mail_folder):
    page = testapp.get("/password/forgot")
    token = csrf_token(page)
    testapp.post(
        "/password/forgot",
        {"name": "alice", "csrf_token": token},
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "Cookie": f"{COOKIE_NAME}={testapp.cookies[COOKIE_NAME]}",
        },
        status=200,
    )
    text = body(mails(mail_folder)[0])
    assert "evil.example" not in text and f"{PUBLIC_URL}/password/reset?code=" in text


def test_a_weak_or_differing_password_uses_nothing_up(testapp, alice, mail_folder, db):
    forgot(testapp, "alice")
    link = mailed_link(mail_folder)
    assert "at least 8 characters" in reset(testapp, link, password="short", status=400).text
    assert "two passwords differ" in reset(testapp, link, again="another thing", status=400).text
    db.rollback()
    assert db.execute(sa.select(password_resets.c.used_at)).scalar_one() is None
    assert "is changed" in reset(testapp, link).text


def test_posts_without_or_with_a_stale_csrf_token_change_nothing(testapp, alice, mail_folder, db):
    assert "nothing was changed" in testapp.post("/password/forgot", {"name": "alice"}, status=400).text
    testapp.post("/password/forgot", {"name": "alice", "csrf_token": "stale"}, status=400)
    assert mails(mail_folder) == []
    forgot(testapp, "alice")
    code = mailed_link(mail_folder).split("code=")[1]
    form = {"code": code, "password": NEW, "password_again": NEW}
    testapp.post("/password/reset", form, status=400)
    testapp.post("/password/reset", {**form, "csrf_token": "stale"}, status=400)
    db.rollback()
    assert db.execute(sa.select(password_resets.c.used_at)).scalar_one() is None
    log_in(testapp, "alice", PASSWORD)


def test_without_a_public_url_or_mail_the_page_says_mails_are_off(testapp, alice, components, mail_folder, db):
    components.settings = dataclasses.replace(components.settings, public_url=None)
    page = testapp.get("/password/forgot")
    assert "mails need its public URL" in page.text and '<form method="post" action="/password/forgot"' not in page.text
    token = csrf_token(testapp.get("/login"))
    assert (
        "reset mails are off"
        in testapp.post("/password/forgot", {"name": "alice", "csrf_token": token}, status=503).text
    )
    components.settings = dataclasses.replace(components.settings, public_url=PUBLIC_URL)
    components.mailer = None
    assert "no mail server is set" in testapp.get("/password/forgot").text
    assert mails(mail_folder) == [] and count_rows(db, password_resets) == 0


def test_a_mail_that_cannot_be_sent_gives_the_same_answer_and_keeps_no_link(testapp, alice, components, db):
    mailer = InMemoryMailer()
    mailer.fail_with = "the mail server said no"
    components.mailer = mailer
    page = forgot(testapp, "alice")
    assert SAME_ANSWER in page.text and "said no" not in page.text
    assert count_rows(db, password_resets) == 0


def test_a_disabled_account_s_link_stops_working(testapp, alice, mail_folder, components):
    forgot(testapp, "alice")
    link = mailed_link(mail_folder)
    with components.write_sessions() as session, session.begin():
        session.execute(sa.update(accounts).where(accounts.c.username == "alice").values(is_active=False))
    testapp.get(local(link), status=404)


def test_the_login_page_links_to_the_forgotten_password_page(testapp):
    assert testapp.get("/login").click("Forgot your password?").request.path == "/password/forgot"


def test_a_reset_disables_the_robots_of_the_accounts_namespace(app, testapp, alice, mail_folder, db):
    intruder = webtest.TestApp(app)
    log_in(intruder, "alice", PASSWORD)
    page = intruder.post(
        "/namespaces/alice/robots",
        {"name": "backdoor", "scope": "delete", "csrf_token": csrf_token(intruder.get("/namespaces/alice/robots"))},
    )
    secret = re.search(r'id="robot-secret" class="copy" value="([^"]+)"', page.text).group(1)
    testapp.get("/v2/", headers=basic("alice+backdoor", secret), status=200)
    forgot(testapp, "alice")
    done = reset(testapp, mailed_link(mail_folder))
    assert "robots of its namespace are disabled" in done.text
    testapp.get("/v2/", headers=basic("alice+backdoor", secret), status=401)
    row = db.execute(sa.select(accounts.c.is_active).where(accounts.c.username == "alice+backdoor")).one()
    assert row.is_active is False

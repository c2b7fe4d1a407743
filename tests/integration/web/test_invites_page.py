"""/invites: administrators invite (the link mailed from the public URL only), see who invited whom, and revoke."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables import accounts, invites
from stevedore.web.ui.session import COOKIE_NAME
from tests.fakes import FixedClock, InMemoryMailer
from tests.integration.conftest import count_rows
from tests.integration.web.helpers import PUBLIC_URL, csrf_token, log_in, mailing_settings, page_csrf_token

ADMIN = ("ada", "the admin password")
LINK = re.compile(r'id="invite-link" class="copy" value="([^"]+)"')


@pytest.fixture
def mail_folder(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def settings(database_url, tmp_path, mail_folder):
    """Like the shared fixture, with a public URL and the embedded default's .eml folder."""
    return mailing_settings(database_url, tmp_path, mail_folder)


@pytest.fixture
def admin(testapp, make_user):
    make_user(*ADMIN, admin=True, email="ada@example.com")
    log_in(testapp, *ADMIN)
    return testapp


def invite(app, email="", status=200, **extra):
    token = csrf_token(app.get("/invites"))
    return app.post("/invites", {"email": email, "csrf_token": token, **extra}, status=status)


def shown_link(page) -> str:
    found = LINK.search(page.text)
    assert found, "the page shows no new invite link"
    return found.group(1).replace("&amp;", "&")


def mails(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]  # type: ignore[misc]


def test_an_invite_made_on_the_page_is_mailed_with_a_link_from_the_public_url(admin, mail_folder, db):
    page = invite(admin, "bob@example.com")
    link = shown_link(page)
    assert link.startswith(f"{PUBLIC_URL}/users/sign_up?invite=")
    assert "was mailed to <strong>bob@example.com</strong>" in page.text
    (mail,) = mails(mail_folder)
    assert mail["To"] == "bob@example.com"
    assert link in mail.get_payload(decode=True).decode()
    row = db.execute(sa.select(invites)).one()
    assert row.email == "bob@example.com" and link.split("invite=")[1] not in (row.code_hash or "")
    listed = admin.get("/invites")
    assert "bob@example.com" in listed.text and "ada" in listed.text and ">open<" in listed.text
    assert link not in listed.text  # shown once, never again


def test_an_invite_without_an_address_shows_the_link_and_sends_nothing(admin, mail_folder, db):
    link = shown_link(invite(admin))
    assert link.startswith(f"{PUBLIC_URL}/users/sign_up?invite=")
    assert mails(mail_folder) == [] and count_rows(db, invites) == 1


def test_a_forged_host_header_never_reaches_the_mailed_link(admin, mail_folder):
    token = csrf_token(admin.get("/invites"))
    page = admin.post(
        "/invites",
        {"email": "bob@example.com", "csrf_token": token},
        # The cookie by hand: the test client keeps cookies for localhost only.
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Cookie": _session_cookie(admin)},
        status=200,
    )
    (mail,) = mails(mail_folder)
    body = mail.get_payload(decode=True).decode()
    assert "evil.example" not in body and f"{PUBLIC_URL}/users/sign_up?invite=" in body
    assert "evil.example" not in shown_link(page)


def _session_cookie(app) -> str:
    return f"{COOKIE_NAME}={app.cookies[COOKIE_NAME]}"


def test_without_a_public_url_the_page_shows_the_link_and_why_no_mail_went_out(admin, components, mail_folder):
    components.settings = dataclasses.replace(components.settings, public_url=None)
    page = invite(admin, "bob@example.com")
    assert "no mail was sent: mails need the registry" in page.text.replace("&#39;", "'").lower()
    assert shown_link(page).startswith("http://localhost/users/sign_up?invite=")
    assert "Mails need the registry's public URL" in admin.get("/invites").text.replace("&#39;", "'")
    assert mails(mail_folder) == []


def test_a_mail_that_cannot_be_sent_says_so_and_keeps_no_invite(admin, components, db):
    mailer = InMemoryMailer()
    mailer.fail_with = "the mail server said no"
    components.mailer = mailer
    page = invite(admin, "bob@example.com", status=502)
    assert "could not be sent, so no invite was made" in page.text and "the mail server said no" in page.text
    assert "bob@example.com" in page.text  # the form keeps the address
    assert "No invites yet" in page.text  # the invite the failed request made is not listed
    assert count_rows(db, invites) == 0


def test_bad_addresses_and_taken_addresses_are_refused_and_nothing_is_made(admin, db, mail_folder):
    assert "invalid e-mail address" in invite(admin, "not an address", status=400).text.lower()
    assert "already exists" in invite(admin, "ADA@example.com", status=400).text
    assert "too long" in invite(admin, "b" * 400 + "@example.com", status=400).text
    assert count_rows(db, invites) == 0 and mails(mail_folder) == []


def test_script_in_an_invited_address_is_shown_escaped(admin, components):
    components.mailer = InMemoryMailer()
    address = "<script>alert(1)</script>@example.com"
    page = invite(admin, address)
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in page.text
    listed = admin.get("/invites")
    assert "<script>" not in listed.text and "&lt;script&gt;" in listed.text


def test_revoking_an_invite_stops_its_link_and_says_so(admin, testapp, db):
    link = shown_link(invite(admin))
    invite_id = db.execute(sa.select(invites.c.id)).scalar_one()
    token = csrf_token(admin.get("/invites"))
    done = admin.post(f"/invites/{invite_id}/revoke", {"csrf_token": token}, status=303)
    assert done.location.endswith("/invites")
    page = done.follow()
    assert f"Invite {invite_id} is revoked" in page.text and ">revoked<" in page.text and "by ada" in page.text
    assert f"Invite {invite_id} is revoked" not in admin.get("/invites").text  # said once
    admin.post(f"/invites/{invite_id}/revoke", {"csrf_token": token}, status=303)  # twice: nothing changes
    testapp.reset()
    testapp.get(link.replace(PUBLIC_URL, ""), status=404)


def test_a_used_or_unknown_invite_cannot_be_revoked(admin, db):
    token = csrf_token(admin.get("/invites"))
    page = admin.post("/invites/999/revoke", {"csrf_token": token}, status=303).follow()
    assert "No invite 999" in page.text


def test_revoking_without_the_csrf_token_changes_nothing(admin, db):
    invite(admin)
    invite_id = db.execute(sa.select(invites.c.id)).scalar_one()
    page = admin.post(f"/invites/{invite_id}/revoke", {}, status=400)
    assert "nothing was changed" in page.text
    db.rollback()
    assert db.execute(sa.select(invites.c.revoked_at)).scalar_one() is None


def test_inviting_without_the_csrf_token_makes_nothing(admin, db, mail_folder):
    admin.post("/invites", {"email": "bob@example.com"}, status=400)
    admin.post("/invites", {"email": "bob@example.com", "csrf_token": "stale"}, status=400)
    assert count_rows(db, invites) == 0 and mails(mail_folder) == []


def test_members_get_a_403_page_and_the_anonymous_the_login_page(testapp, make_user, db):
    make_user("alice", "correct horse battery")
    assert testapp.get("/invites", status=303).location.endswith("/login?next=%2Finvites")
    log_in(testapp, "alice", "correct horse battery")
    assert "You may not see this page" in testapp.get("/invites", status=403).text
    token = page_csrf_token(testapp)
    testapp.post("/invites", {"email": "", "csrf_token": token}, status=403)
    testapp.post("/invites/1/revoke", {"csrf_token": token}, status=403)
    assert count_rows(db, invites) == 0


def test_the_list_is_paged_newest_first_and_shows_expired_invites(admin, components):
    clock = FixedClock(datetime.now(UTC))
    components.clock = clock
    for number in range(52):
        invite(admin, f"user{number}@example.com")
    first = admin.get("/invites")
    assert first.text.index("user51@") < first.text.index("user50@") and "user1@" not in first.text
    older = first.click("Older invites")
    assert "user1@" in older.text and "user0@" in older.text and "user51@" not in older.text
    assert "Older invites" in older.text and "Newest invites" in older.text
    clock.advance(days=6)
    log_in(admin, *ADMIN)  # the old session has gone idle meanwhile
    assert ">expired<" in admin.get("/invites").text
    admin.get("/invites?before=abc", status=400)


@pytest.fixture
def members_invite(components):
    components.settings = dataclasses.replace(components.settings, members_may_invite=True)
    return components


def test_with_members_may_invite_a_member_invites_and_sees_and_revokes_only_their_own(
    admin, members_invite, app, make_user, mail_folder, db
):
    by_ada = shown_link(invite(admin, "first@example.com"))
    make_user("alice", "correct horse battery")
    alice = webtest.TestApp(app)
    log_in(alice, "alice", "correct horse battery")
    assert "Invites</a>" in alice.get("/").text
    page = alice.get("/invites")
    assert "Your invites" in page.text and "first@example.com" not in page.text and "No invites yet" in page.text
    link = shown_link(invite(alice, "second@example.com"))
    assert link.startswith(f"{PUBLIC_URL}/users/sign_up?invite=") and link != by_ada
    mail = mails(mail_folder)[-1]
    assert mail["To"] == "second@example.com" and "alice invited you" in mail.get_payload(decode=True).decode()
    listed = alice.get("/invites")
    assert "second@example.com" in listed.text and "first@example.com" not in listed.text
    ada_id, alice_id = db.execute(sa.select(invites.c.id).order_by(invites.c.id)).scalars().all()
    token = csrf_token(listed)
    refused = alice.post(f"/invites/{ada_id}/revoke", {"csrf_token": token}, status=303).follow()
    assert f"No invite {ada_id}" in refused.text
    db.rollback()
    assert db.execute(sa.select(invites.c.revoked_at).where(invites.c.id == ada_id)).scalar_one() is None
    done = alice.post(f"/invites/{alice_id}/revoke", {"csrf_token": token}, status=303).follow()
    assert f"Invite {alice_id} is revoked" in done.text
    everything = admin.get("/invites")
    assert "All invites" in everything.text
    assert "first@example.com" in everything.text and "second@example.com" in everything.text


def test_without_members_may_invite_the_invites_link_is_only_for_administrators(testapp, make_user):
    make_user("alice", "correct horse battery")
    log_in(testapp, "alice", "correct horse battery")
    assert "Invites</a>" not in testapp.get("/").text


def test_with_members_may_invite_a_disabled_member_invites_nothing(members_invite, app, make_user, db):
    make_user("alice", "correct horse battery")
    alice = webtest.TestApp(app)
    log_in(alice, "alice", "correct horse battery")
    token = csrf_token(alice.get("/invites"))
    with members_invite.write_sessions() as session, session.begin():
        session.execute(sa.update(accounts).where(accounts.c.username == "alice").values(is_active=False))
    alice.post("/invites", {"email": "", "csrf_token": token}, status=(303, 400))
    assert count_rows(db, invites) == 0


def test_a_member_learns_nothing_of_existing_addresses_and_invites_a_bounded_number_a_day(
    admin, members_invite, app, make_user, mail_folder, db
):
    from stevedore.domain.accounts import MAX_MEMBER_INVITES_PER_DAY

    clock = members_invite.clock = FixedClock(datetime.now(UTC))

    make_user("alice", "correct horse battery", email="alice@example.com")
    make_user("bob", "correct horse battery", email="bob@example.com")
    alice = webtest.TestApp(app)
    log_in(alice, "alice", "correct horse battery")
    taken, free = invite(alice, "bob@example.com"), invite(alice, "nobody@example.com")
    for page in (taken, free):  # the same answer whether or not the address has an account
        assert "The sign-up link was mailed to" in page.text and "already exists" not in page.text
    assert "already exists" in invite(admin, "bob@example.com", status=400).text  # administrators are told
    for number in range(MAX_MEMBER_INVITES_PER_DAY - 2):
        invite(alice, f"friend{number}@example.com")
    before = count_rows(db, invites)
    page = invite(alice, "one-too-many@example.com", status=429)
    assert "ask an administrator" in page.text
    db.rollback()
    assert count_rows(db, invites) == before
    clock.advance(days=1, seconds=1)
    log_in(alice, "alice", "correct horse battery")
    invite(alice, "the-next-day@example.com")

"""Invites and the rules for new accounts: expiry, single use, revocation, the list, reserved and duplicate names
and e-mails in any case, and sign-up links built from the configured public URL only."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from stevedore.domain.accounts import AccountService, InviteService, hash_invite_code, sign_up_link
from stevedore.domain.errors import AccountExists, InviteUnknown, PaginationNumberInvalid, UsernameInvalid
from stevedore.domain.model import RESERVED_USERNAMES, validate_username
from stevedore.domain.ports import MailNotSent
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryMailer, PlainPasswordHasher

PUBLIC_URL = "https://registry.example.com"


@pytest.fixture
def store():
    return InMemoryAccountStore()


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def mailer():
    return InMemoryMailer()


@pytest.fixture
def accounts(store, clock):
    return AccountService(store, PlainPasswordHasher(), clock)


@pytest.fixture
def invites(store, clock, mailer):
    return InviteService(store, clock, mailer, public_url=PUBLIC_URL)


def _code_in(body):
    link = next(word for word in body.split() if "/users/sign_up?" in word)
    return link, parse_qs(urlsplit(link).query)["invite"][0]


def test_an_invite_for_an_address_mails_a_sign_up_link_built_from_the_public_url(invites, mailer, accounts):
    admin = accounts.create_account("boss", "a fine password", is_admin=True)
    issued = invites.send_invite(email="new@example.com", invited_by=admin)
    assert issued.mailed_to == "new@example.com" and issued.notice is None
    assert issued.link == f"{PUBLIC_URL}/users/sign_up?invite={issued.code}"
    [(to, subject, body)] = mailer.sent
    assert to == "new@example.com" and subject
    link, code = _code_in(body)
    assert link == issued.link and code == issued.code
    assert "boss invited you" in body
    assert issued.invite.created_by == admin.id


def test_the_code_is_random_and_only_its_hash_is_stored(invites, store):
    first, second = invites.send_invite(), invites.send_invite()
    assert first.code != second.code and len(first.code) >= 32
    stored = store.invites[first.invite.id]
    assert stored.code_hash == hash_invite_code(first.code) and first.code not in stored.code_hash


def test_the_link_comes_from_the_public_url_only(store, clock, mailer):
    """The use case never sees a request: a forged Host header has no way into the link."""
    service = InviteService(store, clock, mailer, public_url="https://registry.example.com/")
    issued = service.send_invite(email="a@example.com")
    assert urlsplit(issued.link).netloc == "registry.example.com"
    assert sign_up_link("https://r.example.com", "a&b=c") == "https://r.example.com/users/sign_up?invite=a%26b%3Dc"


def test_without_a_public_url_the_invite_is_made_but_not_mailed_and_the_caller_is_told(store, clock, mailer):
    service = InviteService(store, clock, mailer, public_url=None)
    issued = service.send_invite(email="new@example.com")
    assert issued.invite.id is not None and issued.link is None and issued.mailed_to is None
    assert "stevedore.public_url" in issued.notice
    assert mailer.sent == []


def test_without_a_mailer_the_invite_is_made_and_the_caller_is_told(store, clock):
    issued = InviteService(store, clock, None, public_url=PUBLIC_URL).send_invite(email="new@example.com")
    assert issued.invite.id is not None and issued.link and "mail is off" in issued.notice


def test_an_invite_without_an_address_sends_nothing(invites, mailer):
    issued = invites.send_invite()
    assert issued.link and issued.mailed_to is None and issued.notice is None and mailer.sent == []


def test_a_mail_that_cannot_be_sent_is_an_error(invites, mailer):
    mailer.fail_with = "connection refused"
    with pytest.raises(MailNotSent, match="connection refused"):
        invites.send_invite(email="new@example.com")


def test_no_invite_for_an_address_that_has_an_account_in_any_case(invites, accounts):
    accounts.create_account("alice", "a fine password", email="Alice@Example.com")
    with pytest.raises(AccountExists):
        invites.send_invite(email="alice@example.COM")


def test_an_invite_is_used_once(invites, accounts):
    issued = invites.send_invite(email="new@example.com")
    account = accounts.redeem_invite(issued.code, "newbie", "a fine password")
    assert account.email == "new@example.com"
    with pytest.raises(InviteUnknown):
        accounts.redeem_invite(issued.code, "second", "a fine password")
    assert accounts.accounts.by_username("second") is None


def test_invites_expire_after_five_days_by_default(invites, accounts, clock):
    issued = invites.send_invite()
    assert issued.invite.expires_at == clock.now() + timedelta(days=5)
    clock.advance(days=5)
    with pytest.raises(InviteUnknown):
        accounts.redeem_invite(issued.code, "late", "a fine password")
    assert accounts.accounts.by_username("late") is None


def test_the_lifetime_is_configurable_and_an_invite_works_until_just_before_it_ends(store, clock, accounts):
    service = InviteService(store, clock, None, public_url=None, lifetime=timedelta(days=1))
    issued = service.send_invite()
    clock.advance(hours=23, minutes=59)
    assert accounts.redeem_invite(issued.code, "intime", "a fine password").username == "intime"


def test_a_revoked_invite_cannot_be_used_and_revoking_twice_changes_nothing(invites, accounts, clock):
    admin = accounts.create_account("boss", "a fine password", is_admin=True)
    issued = invites.send_invite()
    revoked = invites.revoke_invite(issued.invite.id, revoked_by=admin)
    assert revoked.revoked_by == admin.id and revoked.revoked_at == clock.now()
    clock.advance(hours=1)
    again = invites.revoke_invite(issued.invite.id)
    assert again.revoked_by == admin.id and again.revoked_at == clock.now() - timedelta(hours=1)
    with pytest.raises(InviteUnknown):
        accounts.redeem_invite(issued.code, "newbie", "a fine password")
    assert accounts.accounts.by_username("newbie") is None


def test_a_used_or_unknown_invite_cannot_be_revoked(invites, accounts):
    issued = invites.send_invite()
    accounts.redeem_invite(issued.code, "newbie", "a fine password")
    with pytest.raises(InviteUnknown, match="used already"):
        invites.revoke_invite(issued.invite.id)
    with pytest.raises(InviteUnknown):
        invites.revoke_invite(999)


@pytest.mark.parametrize("code", ["", "forged", "x" * 32])
def test_a_forged_code_is_refused(invites, accounts, code):
    invites.send_invite()
    with pytest.raises(InviteUnknown):
        accounts.redeem_invite(code, "newbie", "a fine password")


def test_the_list_says_who_invited_whom_and_whether_and_by_whom_it_was_used(invites, accounts, clock):
    admin = accounts.create_account("boss", "a fine password", is_admin=True)
    used = invites.send_invite(email="bob@example.com", invited_by=admin)
    accounts.redeem_invite(used.code, "bob", "a fine password")
    revoked = invites.send_invite(invited_by=admin)
    invites.revoke_invite(revoked.invite.id, revoked_by=admin)
    expired = invites.send_invite()
    clock.advance(days=6)
    fresh = invites.send_invite(email="carol@example.com", invited_by=admin)
    page = invites.list_invites()
    assert [r.invite.id for r in page.records] == [
        fresh.invite.id,
        expired.invite.id,
        revoked.invite.id,
        used.invite.id,
    ]
    now = clock.now()
    assert [(r.invited_by, r.used_by, r.revoked_by, r.invite.state(now)) for r in page.records] == [
        ("boss", None, None, "open"),
        (None, None, None, "expired"),
        ("boss", None, "boss", "revoked"),
        ("boss", "bob", None, "used"),
    ]
    assert page.records[3].invite.email == "bob@example.com" and page.next_before_id is None


def test_the_list_is_paged_newest_first(invites):
    made = [invites.send_invite().invite.id for _ in range(5)]
    first = invites.list_invites(limit=2)
    assert [r.invite.id for r in first.records] == made[::-1][:2] and first.next_before_id == made[3]
    second = invites.list_invites(limit=2, before_id=first.next_before_id)
    third = invites.list_invites(limit=2, before_id=second.next_before_id)
    assert [r.invite.id for r in second.records + third.records] == made[::-1][2:]
    assert third.next_before_id is None


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_the_list_refuses_silly_page_sizes(invites, limit):
    with pytest.raises(PaginationNumberInvalid):
        invites.list_invites(limit=limit)


@pytest.mark.parametrize("name", sorted({"library", "v2", "admin", "setup", "static", "api", "login", "logout",
                                         "users", "invites", "namespaces", "repositories", "tokens", "robots",
                                         "audit", "search", "health"}))  # fmt: skip
def test_reserved_names_are_refused(accounts, name):
    assert name in RESERVED_USERNAMES
    with pytest.raises(UsernameInvalid, match="reserved"):
        accounts.create_account(name, "a fine password")


@pytest.mark.parametrize("name", ["a", "alice", "a.b", "a_b", "a__b", "a-b", "a---b", "x" * 64, "0day"])
def test_names_follow_one_component_of_the_repository_name_grammar(name):
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["a..b", "a._b", "a___b", "_a", "a-", ".a", "a/b", "a+b", "x" * 65, "ä"])
def test_names_outside_the_grammar_are_refused(name):
    with pytest.raises(UsernameInvalid):
        validate_username(name)


def test_a_name_in_capitals_is_refused_with_its_lowercase_form(accounts):
    accounts.create_account("alice", "a fine password")
    for name in ("Alice", "ALICE"):
        with pytest.raises(UsernameInvalid, match="'alice'"):
            accounts.create_account(name, "a fine password")
    assert accounts.accounts.count() == 1


def test_an_e_mail_address_is_unique_ignoring_case(accounts):
    accounts.create_account("alice", "a fine password", email="Alice@Example.com")
    with pytest.raises(AccountExists, match="e-mail"):
        accounts.create_account("bob", "a fine password", email="alice@example.com")
    assert accounts.accounts.by_username("bob") is None


def test_a_login_name_of_an_older_release_still_logs_in(store, accounts):
    """`a..b` was a valid name before names followed the repository grammar: its owner is not locked out."""
    from dataclasses import replace

    account = accounts.create_account("ab", "a fine password")
    store.accounts[account.id] = replace(account, username="a..b")
    assert accounts.authenticate("a..b", "a fine password") is not None

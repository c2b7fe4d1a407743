"""Password resets: single use, expiring, one live link an account, mailed from the public URL only, and the same
answer for every asker."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from stevedore.domain.access_tokens import AccessTokenService, TokenScope
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import AccountUnknown, WeakPassword
from stevedore.domain.model import Account
from stevedore.domain.password_resets import (
    PasswordResetMailOff,
    PasswordResetRefused,
    PasswordResetService,
    PasswordResetUnknown,
    hash_reset_code,
    reset_link,
)
from stevedore.domain.ports import MailNotSent
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryMailer, PlainPasswordHasher
from tests.fakes_access_tokens import InMemoryAccessTokenStore
from tests.fakes_password_resets import InMemoryPasswordResetStore

PUBLIC_URL = "https://registry.example"
CODE = re.compile(r"/password/reset\?code=([A-Za-z0-9_-]+)")


class World:
    def __init__(self, *, public_url=PUBLIC_URL, mailer=True):
        self.clock = FixedClock()
        self.accounts = InMemoryAccountStore()
        self.account_service = AccountService(self.accounts, PlainPasswordHasher(), self.clock)
        self.mailer = InMemoryMailer() if mailer else None
        self.resets = InMemoryPasswordResetStore()
        self.tokens = AccessTokenService(InMemoryAccessTokenStore(), self.clock)
        self.service = PasswordResetService(
            self.resets,
            self.account_service,
            self.clock,
            self.mailer,
            public_url=public_url,
            lifetime=timedelta(minutes=60),
            access_tokens=self.tokens,
        )
        self.alice = self.account_service.create_account("alice", "the old password", email="alice@example.com")
        self.admin = self.account_service.create_account("ada", "the admin password", is_admin=True)

    def mailed_code(self, index=-1) -> str:
        _to, _subject, body = self.mailer.sent[index]
        return CODE.search(body).group(1)


@pytest.fixture
def world():
    return World()


def test_a_mailed_link_sets_a_new_password_once_and_ends_the_old_tokens(world):
    asked = world.service.request_by_mail("alice")
    assert asked.mailed and asked.account.username == "alice"
    (to, subject, body) = world.mailer.sent[0]
    assert to == "alice@example.com" and "password" in subject.lower()
    assert f"{PUBLIC_URL}/password/reset?code=" in body and "works once" in body
    code = world.mailed_code()
    generation = world.accounts.get(world.alice.id).token_generation
    world.service.reset(code, "a brand new password")
    assert world.account_service.authenticate("alice", "a brand new password") is not None
    assert world.account_service.authenticate("alice", "the old password") is None
    assert world.accounts.get(world.alice.id).token_generation == generation + 1
    with pytest.raises(PasswordResetUnknown):
        world.service.reset(code, "yet another password")  # single use
    assert world.account_service.authenticate("alice", "a brand new password") is not None


def test_only_the_hash_of_the_code_is_stored(world):
    world.service.request_by_mail("alice")
    code = world.mailed_code()
    (stored,) = world.resets.resets.values()
    assert stored.code_hash == hash_reset_code(code) and code not in stored.code_hash


def test_the_account_is_found_by_its_e_mail_address_ignoring_case(world):
    assert world.service.request_by_mail("ALICE@example.com").mailed
    assert world.mailer.sent[0][0] == "alice@example.com"


def test_unknown_names_disabled_accounts_and_accounts_without_an_address_get_no_mail(world):
    world.account_service.create_account("bob", "bob's password")  # no address
    world.account_service.create_account("carol", "carol's password", email="carol@example.com")
    world.account_service.set_active("carol", False)
    for asked in ("nobody", "nobody@example.com", "bob", "carol", "carol@example.com", "", " ", "x" * 400, "A B"):
        assert not world.service.request_by_mail(asked).mailed
    assert world.mailer.sent == [] and world.resets.resets == {}


def test_a_re_request_within_minutes_mails_nothing_and_later_one_supersedes_the_old_link(world):
    world.service.request_by_mail("alice")
    first = world.mailed_code()
    world.clock.advance(minutes=2)
    again = world.service.request_by_mail("alice")
    assert not again.mailed and len(world.mailer.sent) == 1
    world.clock.advance(minutes=4)
    assert world.service.request_by_mail("alice").mailed
    second = world.mailed_code()
    assert second != first
    with pytest.raises(PasswordResetUnknown):
        world.service.check(first)  # superseded: one live link at a time
    world.service.reset(second, "a brand new password")


def test_an_expired_link_is_refused(world):
    world.service.request_by_mail("alice")
    code = world.mailed_code()
    world.clock.advance(minutes=59)
    world.service.check(code)
    world.clock.advance(minutes=1)
    with pytest.raises(PasswordResetUnknown):
        world.service.reset(code, "a brand new password")
    assert world.account_service.authenticate("alice", "the old password") is not None


@pytest.mark.parametrize("code", ["", "forged", "x" * 500, "é" * 10, "a\nb"])
def test_forged_codes_are_refused_with_the_one_answer(world, code):
    with pytest.raises(PasswordResetUnknown) as raised:
        world.service.reset(code, "a brand new password")
    assert "used already" in raised.value.message and "expired" in raised.value.message


def test_a_weak_password_uses_nothing_up(world):
    world.service.request_by_mail("alice")
    code = world.mailed_code()
    for weak in ("short", "alice", "aaaaaaaaaaa"):
        with pytest.raises(WeakPassword):
            world.service.reset(code, weak)
    world.service.reset(code, "a brand new password")


def test_a_link_of_an_account_disabled_meanwhile_is_refused(world):
    world.service.request_by_mail("alice")
    code = world.mailed_code()
    world.account_service.set_active("alice", False)
    with pytest.raises(PasswordResetUnknown):
        world.service.check(code)


def test_ending_the_links_of_an_account_stops_them(world):
    world.service.request_by_mail("alice")
    code = world.mailed_code()
    assert world.service.end_links(world.accounts.get(world.alice.id)) == 1
    with pytest.raises(PasswordResetUnknown):
        world.service.check(code)


def test_a_reset_revokes_the_personal_access_tokens(world):
    alice = world.accounts.get(world.alice.id)
    world.tokens.create(alice, name="ci", scope=TokenScope.PUSH.value, namespaces=(), expires_in_days=None)
    world.service.request_by_mail("alice")
    world.service.reset(world.mailed_code(), "a brand new password")
    assert all(token.revoked_at is not None for token in world.tokens.list_for(alice))


def test_without_a_public_url_or_a_mailer_mails_are_off_for_everybody():
    for world in (World(public_url=None), World(mailer=False)):
        assert not world.service.mail_on
        for asked in ("alice", "nobody"):
            with pytest.raises(PasswordResetMailOff):
                world.service.request_by_mail(asked)
        assert world.resets.resets == {}


def test_a_mail_that_fails_raises_so_the_caller_keeps_nothing(world):
    world.mailer.fail_with = "the server said no"
    with pytest.raises(MailNotSent):
        world.service.request_by_mail("alice")


def test_the_link_is_built_from_the_public_url_only():
    assert reset_link("https://registry.example/", "abc") == "https://registry.example/password/reset?code=abc"
    assert reset_link("https://example.org/registry", "a+b") == "https://example.org/registry/password/reset?code=a%2Bb"


def test_an_administrator_s_reset_is_mailed_when_it_can_be(world):
    admin = world.accounts.get(world.admin.id)
    issued = world.service.issue_by_admin("alice", admin)
    assert issued.mailed_to == "alice@example.com" and issued.notice is None
    assert issued.link.startswith(f"{PUBLIC_URL}/password/reset?code=")
    assert "ada, an administrator" in world.mailer.sent[0][2]
    assert issued.reset.created_by == admin.id
    world.service.reset(issued.code, "a brand new password")


def test_an_administrator_s_reset_without_mail_is_for_them_to_pass_on():
    world = World(public_url=None)
    admin = world.accounts.get(world.admin.id)
    issued = world.service.issue_by_admin("alice", admin)
    assert issued.link is None and issued.mailed_to is None and "public URL" in issued.notice
    world.service.reset(issued.code, "a brand new password")
    world = World(mailer=False)
    issued = world.service.issue_by_admin("alice", world.accounts.get(world.admin.id))
    assert issued.link.startswith(PUBLIC_URL) and "mail is off" in issued.notice
    world = World()
    world.account_service.create_account("bob", "bob's password")
    issued = world.service.issue_by_admin("bob", world.accounts.get(world.admin.id))
    assert issued.mailed_to is None and "no e-mail address" in issued.notice and world.mailer.sent == []


def test_an_administrator_s_new_link_supersedes_the_mailed_one(world):
    world.service.request_by_mail("alice")
    mailed = world.mailed_code()
    issued = world.service.issue_by_admin("alice", world.accounts.get(world.admin.id))
    with pytest.raises(PasswordResetUnknown):
        world.service.check(mailed)
    world.service.check(issued.code)


def test_an_administrator_cannot_reset_a_disabled_or_unknown_account(world):
    world.account_service.set_active("alice", False)
    admin = world.accounts.get(world.admin.id)
    with pytest.raises(PasswordResetRefused):
        world.service.issue_by_admin("alice", admin)
    with pytest.raises(AccountUnknown):
        world.service.issue_by_admin("nobody", admin)
    assert world.resets.resets == {}


def test_robot_accounts_get_no_reset_mail(world):
    world.accounts.add(Account(None, "team+ci", "ci@example.com", "x", created_at=world.clock.now()))
    assert not world.service.request_by_mail("ci@example.com").mailed and world.mailer.sent == []

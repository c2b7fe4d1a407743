"""The invites and the case-blind uniqueness of names and e-mails on the real databases (SQLite and PostgreSQL):
what the SQL store and the 0005 migration promise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction, make_engine
from stevedore.adapters.sql.migrations import downgrade, upgrade
from stevedore.domain.accounts import AccountService, InviteService
from stevedore.domain.errors import AccountExists, InviteUnknown

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def run(components):
    """Run `work(invites, accounts)` in one committed transaction, as a request would."""

    def run(work):
        session = components.write_sessions()
        try:
            with transaction.manager:
                join_transaction(session)
                store = SqlAccountStore(session)
                accounts = AccountService(store, components.hasher, components.clock)
                invites = InviteService(store, components.clock, None, public_url="https://r.example.com")
                return work(invites, accounts)
        finally:
            session.close()

    return run


def test_revoke_list_and_names_survive_the_database(run, make_user):
    boss = make_user("boss", admin=True)
    used = run(lambda invites, _: invites.send_invite(email="bob@example.com", invited_by=boss))
    run(lambda _, accounts: accounts.redeem_invite(used.code, "bob", "a fine password"))
    revoked = run(lambda invites, _: invites.send_invite(invited_by=boss))
    run(lambda invites, _: invites.revoke_invite(revoked.invite.id, revoked_by=boss))
    fresh = run(lambda invites, _: invites.send_invite())

    page = run(lambda invites, _: invites.list_invites(limit=2))
    assert [r.invite.id for r in page.records] == [fresh.invite.id, revoked.invite.id]
    assert page.next_before_id == revoked.invite.id
    assert [(r.invited_by, r.revoked_by, r.invite.revoked_at is not None) for r in page.records] == [
        (None, None, False),
        ("boss", "boss", True),
    ]
    [last] = run(lambda invites, _: invites.list_invites(limit=2, before_id=page.next_before_id)).records
    assert (last.invite.id, last.invited_by, last.used_by, last.invite.email) == (
        used.invite.id,
        "boss",
        "bob",
        "bob@example.com",
    )
    with pytest.raises(InviteUnknown):
        run(lambda _, accounts: accounts.redeem_invite(revoked.code, "carol", "a fine password"))


def test_an_invite_used_meanwhile_is_not_used_twice(run, components):
    """Two sign-ups with one code that both passed the check: the second one's update finds it used."""
    issued = run(lambda invites, _: invites.send_invite())
    stale = run(lambda _, accounts: accounts.accounts.invite(issued.invite.id))
    run(lambda _, accounts: accounts.redeem_invite(issued.code, "first", "a fine password"))

    def second(_, accounts):
        account = accounts.create_account("second", "a fine password")
        accounts.accounts.mark_invite_used(stale, account.id, WHEN)

    with pytest.raises(InviteUnknown):
        run(second)
    assert run(lambda _, accounts: accounts.accounts.by_username("second")) is None


def test_e_mails_are_unique_ignoring_case_even_for_a_writer_that_skips_the_check(run, make_user, database_url):
    make_user("alice", email="Alice@Example.com")
    assert run(lambda _, accounts: accounts.accounts.by_email("ALICE@example.com")).username == "alice"
    with pytest.raises(AccountExists):
        run(lambda _, accounts: accounts.create_account("bob", "a fine password", email="alice@example.com"))
    engine = make_engine(database_url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO accounts (username, email, password_hash, is_admin, is_active, created_at) "
                    "VALUES ('bob', 'ALICE@EXAMPLE.COM', 'x', :no, :yes, :when)"
                ),
                {"no": False, "yes": True, "when": WHEN},
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO accounts (username, password_hash, is_admin, is_active, created_at) "
                    "VALUES ('ALICE', 'x', :no, :yes, :when)"
                ),
                {"no": False, "yes": True, "when": WHEN},
            )
    finally:
        engine.dispose()


def _insert_accounts(database_url, *emails):
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for number, email in enumerate(emails):
                conn.execute(
                    sa.text(
                        "INSERT INTO accounts (username, email, password_hash, is_admin, is_active, created_at) "
                        "VALUES (:name, :email, 'x', :no, :yes, :when)"
                    ),
                    {"name": f"user{number}", "email": email, "no": False, "yes": True, "when": WHEN},
                )
    finally:
        engine.dispose()


def test_the_migration_refuses_e_mails_that_differ_only_in_case_and_names_the_accounts(database_url):
    downgrade(database_url, revision="0004")
    _insert_accounts(database_url, "Dup@Example.com", "dup@example.com", None, None, "other@example.com")
    with pytest.raises(RuntimeError, match=r"'dup@example\.com': user0, user1"):
        upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE accounts SET email = NULL WHERE username = 'user1'"))
    finally:
        engine.dispose()
    upgrade(database_url)  # fixed by hand: now it goes through, the accounts and addresses as they were
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT username, email FROM accounts ORDER BY username")).all()
        assert [tuple(r) for r in rows] == [
            ("user0", "Dup@Example.com"),
            ("user1", None),
            ("user2", None),
            ("user3", None),
            ("user4", "other@example.com"),
        ]
    finally:
        engine.dispose()


def test_the_downgrade_drops_what_0005_added_and_keeps_the_invites(database_url):
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO invites (code_hash, created_at, expires_at, revoked_at) "
                    "VALUES ('h', :when, :later, :when)"
                ),
                {"when": WHEN, "later": WHEN + timedelta(days=5)},
            )
        downgrade(database_url, revision="0004")
        inspector = sa.inspect(engine)
        assert {"revoked_at", "revoked_by"}.isdisjoint(c["name"] for c in inspector.get_columns("invites"))
        assert not any("lower" in (i["name"] or "") for i in inspector.get_indexes("accounts"))
        _insert_accounts(database_url, "same@example.com", "SAME@example.com")  # allowed again, as before 0005
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT code_hash FROM invites")).scalars().all() == ["h"]
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError):
        upgrade(database_url)

"""Domain layer: accounts, invites and password login — the use cases, with their ports handed in."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from stevedore.domain.errors import (
    AccountExists,
    AccountUnknown,
    EmailInvalid,
    InviteUnknown,
    UsernameInvalid,
    WeakPassword,
)
from stevedore.domain.model import Account, Invite, validate_username
from stevedore.domain.ports import AccountStore, Clock, PasswordHasher

MIN_PASSWORD_LENGTH = 8
INVITE_LIFETIME = timedelta(days=7)
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_password_strength(password: str, username: str = "") -> None:
    if not password or not password.strip():
        raise WeakPassword("the password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if username and password.lower() == username.lower():
        raise WeakPassword("the password must differ from the user name")
    if len(set(password)) < 3:
        raise WeakPassword("the password must not repeat one or two characters")
    if len(password.encode()) > 72:
        # bcrypt only reads 72 bytes; a longer password would silently be cut.
        raise WeakPassword("the password must be at most 72 bytes long")


def validate_email(email: str | None) -> str | None:
    if email is None or email == "":
        return None
    if not _EMAIL_RE.fullmatch(email):
        raise EmailInvalid(f"invalid e-mail address {email!r}")
    return email


def hash_invite_code(code: str) -> str:
    # Invite codes are random and long, so a plain SHA-256 is enough to keep them useless if the table leaks.
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvite:
    code: str
    invite: Invite


class AccountService:
    def __init__(
        self, accounts: AccountStore, hasher: PasswordHasher, clock: Clock, *, dummy_hash: str | None = None
    ) -> None:
        self.accounts = accounts
        self.hasher = hasher
        self.clock = clock
        # A hash made with the same work factor as real ones: checking an unknown name costs what a known one does.
        self.dummy_hash = dummy_hash or _DUMMY_HASH

    def create_account(
        self, username: str, password: str, *, email: str | None = None, is_admin: bool = False
    ) -> Account:
        name = validate_username(username)
        check_password_strength(password, name)
        email = validate_email(email)
        if self.accounts.by_username(name) is not None:
            raise AccountExists(f"the user {name!r} already exists")
        account = Account(
            id=None,
            username=name,
            email=email,
            password_hash=self.hasher.hash(password),
            is_admin=is_admin,
            is_active=True,
            created_at=self.clock.now(),
        )
        return self.accounts.add(account)

    def authenticate(self, username: str, password: str) -> Account | None:
        """The active account for these credentials, or None. Runs bcrypt even for unknown names (no timing oracle)."""
        try:
            name = validate_username(username)
        except UsernameInvalid:
            name = None  # cannot exist; still spend the same time
        if name != username:
            name = None  # "alice " is not alice
        account = self.accounts.by_username(name) if name else None
        if account is None:
            self.hasher.verify(password, self.dummy_hash)
            return None
        if not self.hasher.verify(password, account.password_hash) or not account.is_active:
            return None
        return account

    def account_named(self, username: str) -> Account:
        account = self.accounts.by_username(username)
        if account is None:
            raise AccountUnknown(f"no user {username!r}")
        return account

    def change_password(self, username: str, password: str) -> Account:
        """A new password. Every token, refresh token and cached login of the old one stops working."""
        account = self.account_named(username)
        check_password_strength(password, account.username)
        account.password_hash = self.hasher.hash(password)
        account.token_generation += 1
        self.accounts.update(account)
        return account

    def set_active(self, username: str, active: bool) -> Account:
        """Disable (or enable again) an account. A disabled account's tokens stop working at once, and enabling it
        again does not bring them back."""
        account = self.account_named(username)
        if account.is_active and not active:
            account.token_generation += 1
        account.is_active = active
        self.accounts.update(account)
        return account

    def delete_account(self, username: str) -> Account:
        """Remove the account. Its id is never given to another account, so its tokens can never come back."""
        account = self.account_named(username)
        self.accounts.delete(account)
        return account

    def create_invite(self, *, email: str | None = None, created_by: int | None = None) -> IssuedInvite:
        code = secrets.token_urlsafe(24)
        now = self.clock.now()
        invite = Invite(
            id=None,
            code_hash=hash_invite_code(code),
            email=validate_email(email),
            created_by=created_by,
            created_at=now,
            expires_at=now + INVITE_LIFETIME,
        )
        return IssuedInvite(code=code, invite=self.accounts.add_invite(invite))

    def redeem_invite(self, code: str, username: str, password: str, *, email: str | None = None) -> Account:
        invite = self.accounts.invite_by_code_hash(hash_invite_code(code))
        if invite is None or not invite.is_usable(self.clock.now()):
            raise InviteUnknown()
        account = self.create_account(username, password, email=email or invite.email)
        assert account.id is not None
        self.accounts.mark_invite_used(invite, account.id, self.clock.now())
        return account


# A bcrypt hash of a random string: verifying against it costs what a real check costs.
_DUMMY_HASH = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5m9d1iWPv8r1HFKy2r0uJ6G0gZ8x5a2"

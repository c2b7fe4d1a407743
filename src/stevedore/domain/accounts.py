"""Domain layer: accounts, invites and password login — the use cases, with their ports handed in."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, timedelta
from urllib.parse import urlencode

from stevedore.domain.errors import (
    AccountExists,
    AccountUnknown,
    EmailInvalid,
    InvalidInput,
    InviteUnknown,
    PaginationNumberInvalid,
    StevedoreError,
    TooManyRequests,
    WeakPassword,
)
from stevedore.domain.model import Account, Invite, InviteRecord, is_login_name, robot_namespace, validate_username
from stevedore.domain.namespaces import Namespace
from stevedore.domain.ports import AccountStore, Clock, Mailer, NamespaceStore, PasswordHasher

MIN_PASSWORD_LENGTH = 8
DEFAULT_INVITE_LIFETIME = timedelta(days=5)
MAX_MEMBER_INVITES_PER_DAY = 20
MAX_INVITES_PER_PAGE = 100
# The original Stevedore's sign-up path; the invite code travels in the query.
SIGN_UP_PATH = "/users/sign_up"
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


def sign_up_link(public_url: str, code: str) -> str:
    """The link an invite mail carries. Built from the configured public URL only: a request's `Host` header is the
    caller's to choose, and a forged one must not put another domain into a mail."""
    return f"{public_url.rstrip('/')}{SIGN_UP_PATH}?{urlencode({'invite': code})}"


class LastAdministrator(StevedoreError):
    """The change would leave the registry without an active administrator."""

    message = "the last active administrator cannot be removed"


def may_invite(account: Account | None, members_may_invite: bool) -> bool:
    """Who may invite people: active administrators, and every active account when the settings let members invite.
    (Robot accounts, `namespace+name`, never.)"""
    if account is None or not account.is_active or "+" in account.username:
        return False
    return account.is_admin or members_may_invite


@dataclass(frozen=True)
class IssuedInvite:
    code: str
    invite: Invite
    link: str | None = None  # None without a public URL
    mailed_to: str | None = None
    notice: str | None = None  # what the person inviting should know: why no mail went out


@dataclass(frozen=True)
class InvitePage:
    records: list[InviteRecord]
    next_before_id: int | None  # pass as `before_id` for the next (older) page; None on the last page


class AccountService:
    """Accounts and password login. `namespaces` is needed wherever accounts are created (a new user name must not
    be the name of an existing namespace); look-ups for login may leave it out."""

    def __init__(
        self,
        accounts: AccountStore,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        dummy_hash: str | None = None,
        namespaces: NamespaceStore | None = None,
    ) -> None:
        self.accounts = accounts
        self.hasher = hasher
        self.clock = clock
        self.namespaces = namespaces
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
        # An account owns the namespace of its user name: with a namespace of that name already made (claimed by a
        # push or created by an administrator), the new account would silently own what belongs to others.
        if self.namespaces is not None and self.namespaces.get(name) is not None:
            raise AccountExists(f"the name {name!r} is taken by a namespace; choose another user name")
        if email is not None and self.accounts.by_email(email) is not None:
            raise AccountExists(f"an account with the e-mail address {email!r} already exists")
        account = Account(
            id=None,
            username=name,
            email=email,
            password_hash=self.hasher.hash(password),
            is_admin=is_admin,
            is_active=True,
            created_at=self.clock.now(),
        )
        stored = self.accounts.add(account)
        # The account's own namespace gets its row now, in the same transaction: a first push claiming that name at
        # the same moment either waits for this row and is refused, or made it first and this account is refused.
        if self.namespaces is not None and not self.namespaces.add(Namespace(name, self.clock.now(), stored.id)):
            raise AccountExists(f"the name {name!r} is taken by a namespace; choose another user name")
        return stored

    def authenticate(self, username: str, password: str) -> Account | None:
        """The active account for these credentials, or None. Runs bcrypt even for unknown names (no timing oracle)."""
        name = username if is_login_name(username) else None  # "alice " is not alice; bad shapes cannot exist
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
        again does not bring them back. The last active administrator cannot be disabled (LastAdministrator)."""
        account = self.account_named(username)
        if account.is_active and not active:
            self._keep_an_administrator(account, "disabled")
            account.token_generation += 1
        account.is_active = active
        self.accounts.update(account)
        return account

    def set_admin(self, username: str, admin: bool) -> Account:
        """Make an account an administrator, or no longer one. The last active administrator stays one
        (LastAdministrator); a robot account (`namespace+name`) is never one."""
        account = self.account_named(username)
        if admin and "+" in account.username:
            raise InvalidInput("a robot account cannot be an administrator")
        if account.is_admin and not admin:
            self._keep_an_administrator(account, "unmade")
        account.is_admin = admin
        self.accounts.update(account)
        return account

    def disable_robots(self, username: str) -> int:
        """Disable the robots of the user's own namespace (their tokens end); how many were active."""
        return 0 if robot_namespace(username) is not None else self.accounts.disable_robots_of(username)

    def delete_account(self, username: str) -> Account:
        """Remove the account. Its id is never given to another account, so its tokens can never come back. The last
        active administrator cannot be deleted (LastAdministrator)."""
        account = self.account_named(username)
        if account.is_active:
            self._keep_an_administrator(account, "deleted")
        # The robots of its own namespace (domain/robots.py) go with it: nobody stands behind them any more, and a
        # person signing up later under the freed name must not inherit their secrets.
        if robot_namespace(account.username) is None:
            self.accounts.delete_robots_of(account.username)
        self.accounts.delete(account)
        return account

    def _keep_an_administrator(self, account: Account, change: str) -> None:
        """Refuse a change that would leave no active administrator (nobody could administer the registry any more)."""
        if account.is_admin and account.is_active and self.accounts.count_active_admins() <= 1:
            raise LastAdministrator(
                f"the last active administrator, {account.username}, cannot be {change}: "
                "make another account an administrator first"
            )

    def redeem_invite(self, code: str, username: str, password: str, *, email: str | None = None) -> Account:
        invite = self.accounts.invite_by_code_hash(hash_invite_code(code))
        if invite is None or not invite.is_usable(self.clock.now()):
            raise InviteUnknown()  # forged, used, revoked or expired: one answer, nothing to probe
        account = self.create_account(username, password, email=email or invite.email)
        assert account.id is not None
        self.accounts.mark_invite_used(invite, account.id, self.clock.now())
        return account


class InviteService:
    """Invites: made by someone (or the command line), mailed when an address is given, single use, expiring after
    `lifetime`, revocable, and listed with who invited whom. Codes are random and only their hash is stored."""

    def __init__(
        self,
        accounts: AccountStore,
        clock: Clock,
        mailer: Mailer | None,
        *,
        public_url: str | None,
        lifetime: timedelta = DEFAULT_INVITE_LIFETIME,
    ) -> None:
        self.accounts = accounts
        self.clock = clock
        self.mailer = mailer
        self.public_url = public_url
        self.lifetime = lifetime

    def send_invite(self, *, email: str | None = None, invited_by: Account | None = None) -> IssuedInvite:
        """Create an invite, and mail its sign-up link when an address is given. Without a public URL or a mailer
        the invite is still made and `notice` says why no mail went out. A mail that cannot be sent raises
        MailNotSent: the caller's transaction then keeps no invite nobody heard of."""
        email = validate_email(email)
        now = self.clock.now()
        member = invited_by is not None and not invited_by.is_admin
        if member and invited_by is not None and invited_by.id is not None:
            # Members (with `members_may_invite`) invite a bounded number a day: the mails go out under our name.
            made = self.accounts.count_invites_by(invited_by.id, since=now - timedelta(days=1))
            if made >= MAX_MEMBER_INVITES_PER_DAY:
                raise TooManyRequests(
                    f"you made {made} invites in the last day, the most a member may: ask an administrator for more"
                )
        # Administrators learn that an address has an account already; a member is not told (the forgotten-password
        # page hides which addresses have accounts too): the invite goes out, and its sign-up says so to the
        # address's owner alone.
        if email is not None and not member and self.accounts.by_email(email) is not None:
            raise AccountExists(f"an account with the e-mail address {email!r} already exists")
        code = secrets.token_urlsafe(24)
        invite = self.accounts.add_invite(
            Invite(
                id=None,
                code_hash=hash_invite_code(code),
                email=email,
                created_by=invited_by.id if invited_by else None,
                created_at=now,
                expires_at=now + self.lifetime,
            )
        )
        link = sign_up_link(self.public_url, code) if self.public_url else None
        if email is None:
            return IssuedInvite(code, invite, link)
        if link is None:
            notice = "no mail was sent: mails need the registry's public URL (stevedore.public_url)"
            return IssuedInvite(code, invite, link, notice=notice)
        if self.mailer is None:
            notice = "no mail was sent: mail is off (set stevedore.mail.smtp_host or stevedore.mail.folder)"
            return IssuedInvite(code, invite, link, notice=notice)
        self.mailer.send(email, "You are invited to a container registry", self._mail_body(invite, link, invited_by))
        return IssuedInvite(code, invite, link, mailed_to=email)

    def _mail_body(self, invite: Invite, link: str, invited_by: Account | None) -> str:
        who = invited_by.username if invited_by else "An administrator"
        return (
            f"{who} invited you to the container registry at {self.public_url}.\n\n"
            f"Choose your user name and password here:\n\n    {link}\n\n"
            f"The link works once, until {invite.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.\n"
            "If you did not expect this mail, ignore it.\n"
        )

    def revoke_invite(self, invite_id: int, *, revoked_by: Account | None = None) -> Invite:
        """Revoke an unused invite: its link stops working. Revoking twice changes nothing; a used invite cannot
        be revoked (the account it made is disabled or deleted instead). Someone who is no administrator revokes
        only their own invites (others' are unknown to them)."""
        invite = self.accounts.invite(invite_id)
        if invite is None or not _sees_invite(revoked_by, invite):
            raise InviteUnknown(f"no invite {invite_id}")
        if invite.used_at is not None:
            raise InviteUnknown(f"invite {invite_id} was used already: disable or delete the account it made")
        if invite.revoked_at is None:
            self.accounts.mark_invite_revoked(invite, revoked_by.id if revoked_by else None, self.clock.now())
        return invite

    def list_invites(
        self, *, limit: int = 50, before_id: int | None = None, viewer: Account | None = None
    ) -> InvitePage:
        """A page of invites, newest first; `next_before_id` continues with older ones. A `viewer` who is no
        administrator sees only the invites they made."""
        if not 1 <= limit <= MAX_INVITES_PER_PAGE:
            raise PaginationNumberInvalid(f"ask for 1 to {MAX_INVITES_PER_PAGE} invites a page")
        created_by = None
        if viewer is not None and not viewer.is_admin:
            if viewer.id is None:
                return InvitePage([], None)
            created_by = viewer.id
        records = self.accounts.invite_records(limit=limit + 1, before_id=before_id, created_by=created_by)
        more = len(records) > limit
        records = records[:limit]
        return InvitePage(records, records[-1].invite.id if more and records else None)


def _sees_invite(viewer: Account | None, invite: Invite) -> bool:
    """Administrators (and the command line, `None`) see every invite; anyone else only their own."""
    return viewer is None or viewer.is_admin or (viewer.id is not None and invite.created_by == viewer.id)


# A bcrypt hash of a random string: verifying against it costs what a real check costs.
_DUMMY_HASH = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5m9d1iWPv8r1HFKy2r0uJ6G0gZ8x5a2"

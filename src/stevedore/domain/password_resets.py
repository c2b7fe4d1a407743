"""Domain layer: password resets — a single-use link that expires, mailed to the account's own address (asked for on
the forgotten-password page) or made by an administrator (mailed, or shown to them once to pass on).

Codes are random and only their SHA-256 is stored, like invite codes. An account has at most one live link: a new
one supersedes the old. Asking again within `resend_after` of the last link mails nothing, so the form cannot be used
to flood someone's mailbox. Whether a name or address belongs to an account is never told: the asker always gets
the same answer. Using a link sets the new password, which raises the account's token generation (every token,
refresh token and page session of the old password ends).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode

from stevedore.domain.access_tokens import AccessTokenService
from stevedore.domain.accounts import AccountService, check_password_strength, hash_invite_code
from stevedore.domain.errors import InvalidInput, NotFound
from stevedore.domain.model import Account, is_login_name
from stevedore.domain.ports import Clock, Mailer

RESET_PATH = "/password/reset"
DEFAULT_LIFETIME = timedelta(minutes=60)
# Asking again sooner than this after the last link mails nothing (the link already sent still works).
DEFAULT_RESEND_AFTER = timedelta(minutes=5)
MAX_NAME_OR_EMAIL_LENGTH = 320
MAIL_SUBJECT = "Reset your container registry password"


class PasswordResetUnknown(NotFound):
    """One answer for a forged, used, superseded or expired code, and for a disabled account's: nothing to probe."""

    message = "this password reset link is not valid: it was used already, replaced by a newer one, or has expired"


class PasswordResetMailOff(InvalidInput):
    """Reset mails need the registry's public URL (for the link) and a way to send mail."""

    message = "password reset mails are off: ask an administrator to reset your password"


class PasswordResetRefused(InvalidInput):
    """An administrator's reset that cannot be made (a disabled account)."""

    message = "no password reset can be made for this account"


@dataclass
class PasswordReset:
    id: int | None
    account_id: int
    code_hash: str
    created_at: datetime
    expires_at: datetime
    created_by: int | None = None  # the administrator who made it; None when the account's owner asked for it
    used_at: datetime | None = None
    revoked_at: datetime | None = None  # superseded by a newer link, or ended by a password change

    def state(self, now: datetime) -> str:
        """`used`, `revoked`, `expired` or `open`."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        return "open"


class PasswordResetStore(Protocol):
    def add(self, reset: PasswordReset) -> PasswordReset:
        """Persist a new reset and return it with its id."""
        ...

    def by_code_hash(self, code_hash: str) -> PasswordReset | None: ...

    def latest_for(self, account_id: int) -> PasswordReset | None:
        """The account's newest reset, whatever its state."""
        ...

    def revoke_open(self, account_id: int, when: datetime) -> int:
        """Mark every unused, unrevoked reset of the account revoked; return how many."""
        ...

    def mark_used(self, reset: PasswordReset, when: datetime) -> None:
        """Mark it used unless it was used or revoked meanwhile, in which case raise PasswordResetUnknown (two uses
        racing: the loser's transaction rolls back)."""
        ...


def hash_reset_code(code: str) -> str:
    return hash_invite_code(code)  # the same reasoning: random and long, so SHA-256 keeps a leaked table useless


def reset_link(public_url: str, code: str) -> str:
    """The link a reset mail carries. Built from the configured public URL only, never from a request's `Host`
    header: that is the caller's to choose, and a forged one must not put another domain into a reset mail."""
    return f"{public_url.rstrip('/')}{RESET_PATH}?{urlencode({'code': code})}"


@dataclass(frozen=True)
class ResetRequest:
    """What became of a request on the forgotten-password page. Never shown to the asker (who always gets the same
    answer); for the audit log."""

    account: Account | None  # the account the name or address belongs to, if any
    mailed: bool
    why_not: str | None = None  # why nothing was mailed to an account that exists


@dataclass(frozen=True)
class IssuedReset:
    """An administrator's reset: the link (shown to them once when it could not be mailed)."""

    code: str
    reset: PasswordReset
    account: Account
    link: str | None  # None without a public URL: the page builds one for the administrator alone
    mailed_to: str | None = None
    notice: str | None = None  # why no mail went out


class PasswordResetService:
    def __init__(
        self,
        resets: PasswordResetStore,
        accounts: AccountService,
        clock: Clock,
        mailer: Mailer | None,
        *,
        public_url: str | None,
        lifetime: timedelta = DEFAULT_LIFETIME,
        resend_after: timedelta = DEFAULT_RESEND_AFTER,
        access_tokens: AccessTokenService | None = None,
    ) -> None:
        self.resets = resets
        self.access_tokens = access_tokens
        self.accounts = accounts
        self.clock = clock
        self.mailer = mailer
        self.public_url = public_url
        self.lifetime = lifetime
        self.resend_after = resend_after

    @property
    def mail_on(self) -> bool:
        return bool(self.public_url) and self.mailer is not None

    def request_by_mail(self, name_or_email: str) -> ResetRequest:
        """The forgotten-password form: mail a reset link to the account named by its user name or e-mail address,
        if there is one, it is active, it has an address, and no link was mailed to it within `resend_after`.
        Raises PasswordResetMailOff when mails are off (for every asker alike), MailNotSent when the mail did not
        leave (the caller drops its transaction and tells the asker nothing else)."""
        if not self.mail_on:
            raise PasswordResetMailOff()
        account = self._find(name_or_email.strip())
        if account is None:
            return ResetRequest(None, False)
        if not account.is_active:
            return ResetRequest(account, False, "the account is disabled")
        if not account.email:
            return ResetRequest(account, False, "the account has no e-mail address")
        assert account.id is not None
        now = self.clock.now()
        latest = self.resets.latest_for(account.id)
        if latest is not None and latest.state(now) == "open" and now - latest.created_at < self.resend_after:
            return ResetRequest(account, False, "a link was mailed a moment ago")
        code, reset = self._issue(account, None)
        assert self.public_url is not None and self.mailer is not None
        link = reset_link(self.public_url, code)
        self.mailer.send(account.email, MAIL_SUBJECT, self._mail_body(account, reset, link))
        return ResetRequest(account, True)

    def issue_by_admin(self, username: str, admin: Account) -> IssuedReset:
        """An administrator's reset of an active account: mailed when the account has an address and mails are on;
        otherwise the link is for the administrator to pass on, and `notice` says why. Supersedes any older link."""
        account = self.accounts.account_named(username)
        if not account.is_active:
            raise PasswordResetRefused(f"the account {account.username} is disabled: enable the account first")
        code, reset = self._issue(account, admin)
        link = reset_link(self.public_url, code) if self.public_url else None
        if link is None:
            notice = "no mail was sent: mails need the registry's public URL (stevedore.public_url)"
            return IssuedReset(code, reset, account, None, notice=notice)
        if self.mailer is None:
            notice = "no mail was sent: mail is off (set stevedore.mail.smtp_host or stevedore.mail.folder)"
            return IssuedReset(code, reset, account, link, notice=notice)
        if not account.email:
            return IssuedReset(code, reset, account, link, notice=f"no mail was sent: {username} has no e-mail address")
        self.mailer.send(account.email, MAIL_SUBJECT, self._mail_body(account, reset, link, admin))
        return IssuedReset(code, reset, account, link, mailed_to=account.email)

    def check(self, code: str) -> tuple[PasswordReset, Account]:
        """The open reset of this code and its (active) account; else PasswordResetUnknown."""
        reset = self.resets.by_code_hash(hash_reset_code(code)) if _plausible(code) else None
        if reset is None or reset.state(self.clock.now()) != "open":
            raise PasswordResetUnknown()
        account = self.accounts.accounts.get(reset.account_id)
        if account is None or not account.is_active:
            raise PasswordResetUnknown()
        return reset, account

    def reset(self, code: str, password: str) -> Account:
        """Set the new password with a reset code: the code is used up, and every token and session of the account
        ends (its token generation goes up, and its personal access tokens are revoked: whoever knew the old
        password may have made some), and so are the robots of its namespace (disabled, for the owner to look at and
        enable again). A weak password raises WeakPassword and uses nothing up."""
        reset, account = self.check(code)
        check_password_strength(password, account.username)
        now = self.clock.now()
        self.resets.mark_used(reset, now)
        self.resets.revoke_open(reset.account_id, now)
        changed = self.accounts.change_password(account.username, password)
        # Robots of the account's own namespace too: an intruder who knew the old password may have made one.
        self.accounts.disable_robots(changed.username)
        if self.access_tokens is not None:
            for token in self.access_tokens.list_for(changed):
                if token.id is not None and token.revoked_at is None:
                    self.access_tokens.revoke(changed, token.id)
        return changed

    def end_links(self, account: Account) -> int:
        """End the account's open links (its password was changed another way, or it was disabled)."""
        assert account.id is not None
        return self.resets.revoke_open(account.id, self.clock.now())

    def _find(self, text: str) -> Account | None:
        if not text or len(text) > MAX_NAME_OR_EMAIL_LENGTH:
            return None
        if "@" in text:
            account = self.accounts.accounts.by_email(text)
        else:
            account = self.accounts.accounts.by_username(text) if is_login_name(text) else None
        if account is not None and "+" in account.username:
            return None  # a robot account has no password of its own to reset
        return account

    def _issue(self, account: Account, admin: Account | None) -> tuple[str, PasswordReset]:
        assert account.id is not None
        now = self.clock.now()
        self.resets.revoke_open(account.id, now)  # one live link at a time
        code = secrets.token_urlsafe(32)
        reset = self.resets.add(
            PasswordReset(
                id=None,
                account_id=account.id,
                code_hash=hash_reset_code(code),
                created_at=now,
                expires_at=now + self.lifetime,
                created_by=admin.id if admin else None,
            )
        )
        return code, reset

    def _mail_body(self, account: Account, reset: PasswordReset, link: str, admin: Account | None = None) -> str:
        why = (
            f"{admin.username}, an administrator, made this link for you"
            if admin
            else "Someone (we hope you) asked to reset it"
        )
        return (
            f"Your password for the container registry at {self.public_url} (user {account.username}) can be reset. "
            f"{why}.\n\n"
            f"Choose a new password here:\n\n    {link}\n\n"
            f"The link works once, until {reset.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n"
        )


def _plausible(code: str) -> bool:
    # A code of ours is 43 url-safe characters; anything far from that is refused without a look-up.
    return 0 < len(code) <= 128 and code.isascii() and code.isprintable()

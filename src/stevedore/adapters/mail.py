"""Adapters: the Mailer port over SMTP (production) and over a folder of .eml files (the embedded default)."""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from stevedore.domain.ports import MailNotSent

log = logging.getLogger(__name__)

SMTP_SECURITY = ("starttls", "ssl", "none")


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text UTF-8 message. EmailMessage refuses line breaks in headers, so no header can be injected."""
    message = EmailMessage()
    try:
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
    except ValueError as exc:
        raise MailNotSent(f"refused to build a mail with a malformed header: {exc}") from exc
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(body)
    return message


class SmtpMailer:
    """Hands each mail to an SMTP server: STARTTLS (587), implicit TLS (465) or, on a trusted network only, plain
    (25). Certificates are verified. One connection per mail: invites and resets are rare."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        security: str = "starttls",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in SMTP_SECURITY:
            raise ValueError(f"SMTP security must be one of {', '.join(SMTP_SECURITY)}, not {security!r}")
        self.host, self.port, self.sender, self.security = host, port, sender, security
        self.user, self._password, self.timeout = user, password, timeout
        self.tls_context = tls_context or ssl.create_default_context()

    def __repr__(self) -> str:  # never the password
        return f"SmtpMailer({self.host}:{self.port}, {self.security}, user={self.user!r})"

    def send(self, to: str, subject: str, body: str) -> None:
        message = build_message(self.sender, to, subject, body)
        try:
            smtp: smtplib.SMTP
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls_context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self.tls_context)
                if self.user:
                    smtp.login(self.user, self._password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailNotSent(
                f"the mail server {self.host}:{self.port} did not take the mail: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("mail handed to %s:%s for %s", self.host, self.port, to)


class FolderMailer:
    """Writes each mail as an .eml file into a folder private to its owner (0700, files 0600): the embedded default,
    so a development server needs no mail server. Open the files with any mail program, or read them as text."""

    def __init__(self, folder: str, *, sender: str) -> None:
        self.folder = os.path.abspath(folder)
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        message = build_message(self.sender, to, subject, body)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"
        path = os.path.join(self.folder, name)
        try:
            self._make_folder()
            # Written under a dot-name and renamed: whoever watches the folder never reads half a mail.
            partial = os.path.join(self.folder, f".{name}.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
            os.replace(partial, path)
        except OSError as exc:
            raise MailNotSent(f"cannot write the mail into {self.folder}: {exc.strerror}") from exc
        log.info("mail for %s written to %s", to, path)

    def _make_folder(self) -> None:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            os.chmod(self.folder, 0o700)  # makedirs' mode is reduced by the umask, never widened; be exact

"""The Mailer adapters: the .eml folder of the embedded default, and SMTP against a real (aiosmtpd) sink."""

from __future__ import annotations

import email
import email.policy
import os
import stat

import pytest

from stevedore.adapters.mail import FolderMailer, SmtpMailer, build_message
from stevedore.domain.ports import MailNotSent
from tests.integration.mail_sink import SmtpSink
from tests.integration.services import free_port

BODY = "Hello,\n\nsign up here: https://r.example.com/users/sign_up?invite=abc\n\nÜmlauts travel too.\n"


def test_the_folder_mailer_writes_a_parseable_private_eml_in_a_private_folder(tmp_path):
    folder = tmp_path / "var" / "mail"
    mailer = FolderMailer(str(folder), sender="registry@example.com")
    mailer.send("new@example.com", "You are invited", BODY)
    mailer.send("other@example.com", "Second", "two")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no partial files left behind
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    parsed = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files]
    first = next(m for m in parsed if m["To"] == "new@example.com")
    assert first["From"] == "registry@example.com" and first["Subject"] == "You are invited"
    assert first["Date"] and first["Message-ID"]
    assert first.get_content() == BODY


def test_the_folder_mailer_says_when_it_cannot_write(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(MailNotSent, match="cannot write"):
        FolderMailer(str(blocker / "mail"), sender="r@example.com").send("a@example.com", "s", "b")


def test_no_header_can_be_injected():
    with pytest.raises(MailNotSent):
        build_message("r@example.com", "a@example.com\r\nBcc: evil@example.com", "s", "b")


@pytest.fixture
def sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.mark.server
def test_the_smtp_mailer_hands_the_mail_to_the_server(sink):
    SmtpMailer("127.0.0.1", sink.port, sender="registry@example.com", security="none").send(
        "new@example.com", "You are invited", BODY
    )
    [message] = sink.wait_for(1)
    assert sink.envelopes == [("registry@example.com", ["new@example.com"])]
    assert message["Subject"] == "You are invited" and message.get_content().replace("\r\n", "\n") == BODY


@pytest.mark.server
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_the_smtp_mailer_logs_in_with_the_configured_user():
    sink = SmtpSink(logins={"mailer": "s3cret"}).start()
    try:
        good = SmtpMailer(
            "127.0.0.1", sink.port, sender="r@example.com", security="none", user="mailer", password="s3cret"
        )
        good.send("a@example.com", "s", "b")
        assert len(sink.wait_for(1)) == 1
        assert "s3cret" not in repr(good)
    finally:
        sink.stop()


@pytest.mark.server
def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(sink):
    mailer = SmtpMailer("127.0.0.1", sink.port, sender="r@example.com", security="starttls")
    with pytest.raises(MailNotSent):
        mailer.send("a@example.com", "s", "b")
    assert sink.messages == []


def test_an_unreachable_server_is_a_clear_error():
    mailer = SmtpMailer("127.0.0.1", free_port(), sender="r@example.com", security="none", timeout=5)
    with pytest.raises(MailNotSent, match=r"127\.0\.0\.1:\d+ did not take the mail"):
        mailer.send("a@example.com", "s", "b")

"""The mail and invite settings: which transport, default ports, the SMTP password only from the environment."""

import pytest

from stevedore.adapters.mail import FolderMailer, SmtpMailer
from stevedore.web.app import build_mailer
from stevedore.web.settings import Settings, SettingsError

BASE = {"stevedore.database_url": "sqlite://", "stevedore.storage_url": "file:///tmp/blobs"}
ENV = {"STEVEDORE_SECRET_KEY": "k" * 40}


def settings(ini=None, **environ):
    return Settings.from_mapping({**BASE, **(ini or {})}, environ={**ENV, **environ})


def test_without_mail_settings_mail_is_off_and_invites_last_five_days():
    plain = settings()
    assert plain.mail.transport is None and build_mailer(plain) is None
    assert plain.invite_lifetime_days == 5
    assert settings({"stevedore.invite_lifetime_days": "2"}).invite_lifetime_days == 2


def test_a_folder_gives_the_folder_mailer_and_an_smtp_host_wins_over_it(tmp_path):
    folder = settings({"stevedore.mail.folder": str(tmp_path), "stevedore.mail.from": "r@example.com"})
    mailer = build_mailer(folder)
    assert isinstance(mailer, FolderMailer) and mailer.sender == "r@example.com"
    both = settings({"stevedore.mail.folder": str(tmp_path), "stevedore.mail.smtp_host": "smtp.example.com"})
    assert isinstance(build_mailer(both), SmtpMailer)


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25), ("SSL", 465)])
def test_the_smtp_port_follows_the_security_unless_given(security, port):
    mail = settings({"stevedore.mail.smtp_host": "smtp.example.com", "stevedore.mail.smtp_security": security}).mail
    assert mail.smtp_port == port
    assert settings({"stevedore.mail.smtp_host": "h", "stevedore.mail.smtp_port": "2525"}).mail.smtp_port == 2525


def test_an_unknown_security_is_refused():
    with pytest.raises(SettingsError, match="starttls, ssl or none"):
        settings({"stevedore.mail.smtp_host": "h", "stevedore.mail.smtp_security": "tls"})


def test_the_smtp_password_comes_from_the_environment_only_and_is_never_shown():
    ini = {"stevedore.mail.smtp_host": "h", "stevedore.mail.smtp_user": "mailer", "stevedore.mail.smtp_password": "x"}
    with pytest.raises(SettingsError, match="STEVEDORE_SMTP_PASSWORD"):
        settings(ini)
    configured = settings(ini, STEVEDORE_SMTP_PASSWORD="s3cret password")
    assert configured.mail.smtp_password == "s3cret password"
    assert "s3cret" not in repr(configured) and "s3cret" not in repr(build_mailer(configured))


def test_the_console_says_where_mails_go_and_that_they_need_a_public_url(caplog, tmp_path):
    from stevedore.web.app import _announce_mail

    with caplog.at_level("WARNING", logger="stevedore.web.app"):
        _announce_mail(settings({"stevedore.mail.folder": str(tmp_path / "mail")}))
    assert f"written as .eml files to {tmp_path / 'mail'}" in caplog.text
    assert "stevedore.public_url" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="stevedore.web.app"):
        _announce_mail(settings({"stevedore.mail.smtp_host": "h", "stevedore.public_url": "https://r.example.com"}))
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="stevedore.web.app"):
        _announce_mail(settings())
    assert "mail is off" in caplog.text

"""Where the token signing keys come from: the environment, key files, or (development) a file made on first use.
The CLI reads settings too and never needs the keys, so a missing key is only an error where keys are read."""

from __future__ import annotations

import os
import stat

import pytest

from stevedore.adapters.token_keys import generate_signing_key_pem
from stevedore.web.app import build_token_signer
from stevedore.web.settings import Settings, SettingsError

BASE = {"stevedore.database_url": "sqlite://", "stevedore.storage_url": "file:///tmp/x"}
ENV = {"STEVEDORE_SECRET_KEY": "s" * 40}


def settings(ini=None, **environ):
    return Settings.from_mapping({**BASE, **(ini or {})}, environ={**ENV, **environ})


def test_settings_without_any_key_still_parse_but_cannot_sign():
    parsed = settings()
    with pytest.raises(SettingsError, match="no token signing key"):
        parsed.token_signing_keys()


def test_the_environment_holds_several_keys_newest_first():
    first, second = generate_signing_key_pem(), generate_signing_key_pem()
    parsed = settings(STEVEDORE_TOKEN_SIGNING_KEYS=(first + second).decode())
    signer = build_token_signer(parsed)
    assert [key.kid for key in signer.keys] == [key.kid for key in build_token_signer(parsed).keys]
    assert len(signer.keys) == 2 and signer.keys[0].kid != signer.keys[1].kid
    with pytest.raises(SettingsError, match="no PEM private key"):
        settings(STEVEDORE_TOKEN_SIGNING_KEYS="not a key").token_signing_keys()


def test_key_files_are_read_in_order_and_a_missing_one_says_how_to_make_it(tmp_path):
    old = tmp_path / "old.pem"
    old.write_bytes(generate_signing_key_pem())
    missing = tmp_path / "new.pem"
    parsed = settings({"stevedore.token_signing_key_files": f"{missing} {old}"})
    with pytest.raises(SettingsError, match="token-key create"):
        parsed.token_signing_keys()


def test_a_development_ini_creates_the_first_key_file_private(tmp_path):
    path = tmp_path / "var" / "token.pem"
    parsed = settings({"stevedore.token_signing_key_files": str(path), "stevedore.create_token_signing_key": "true"})
    (key,) = build_token_signer(parsed).keys
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert build_token_signer(parsed).keys[0].kid == key.kid  # made once, then reused


def test_a_key_that_cannot_sign_is_refused_with_its_number(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    good = tmp_path / "good.pem"
    good.write_bytes(generate_signing_key_pem())
    with pytest.raises(SettingsError, match="token signing key 2"):
        build_token_signer(settings({"stevedore.token_signing_key_files": f"{good} {bad}"}))

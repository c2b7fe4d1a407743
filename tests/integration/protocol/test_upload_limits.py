"""The cap on open upload sessions per account (stevedore.max_open_uploads_per_account), and aborting an account's
uploads before the account is deleted."""

from __future__ import annotations

import dataclasses
import os

import pytest
import transaction

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.sql.tables import uploads
from stevedore.domain.registry import RegistryService
from stevedore.web.settings import Settings
from tests.integration.conftest import SECRET, count_rows
from tests.integration.protocol.helpers import basic, digest, error_codes, path_of, push_blob, with_query

CAP = 3


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, max_open_uploads_per_account=CAP)


def upload_folders(settings) -> set[str]:
    folder = os.path.join(settings.storage_path, "uploads")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def start(testapp, auth, repo="limits/app", status=202):
    return testapp.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=status)


def fill(testapp, auth, repo="limits/app"):
    return [start(testapp, auth, repo).headers["Location"] for _ in range(CAP)]


def test_upload_past_the_cap_is_429_toomanyrequests_and_opens_nothing(testapp, auth, settings, db):
    fill(testapp, auth)
    folders = upload_folders(settings)
    refused = start(testapp, auth, "limits/elsewhere", status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    message = refused.json["errors"][0]["message"]
    assert f"{CAP} uploads are open" in message and "DELETE" in message, message
    assert refused.json["errors"][0]["detail"] == {"open": CAP, "limit": CAP}
    assert count_rows(db, uploads) == CAP
    assert upload_folders(settings) == folders and len(folders) == CAP


def test_cancelling_or_finishing_an_upload_frees_its_slot(testapp, auth):
    first, second, _third = fill(testapp, auth)
    start(testapp, auth, status=429)
    testapp.delete(path_of(first), headers=auth, status=204)
    start(testapp, auth)
    start(testapp, auth, status=429)
    data = b"finished"
    testapp.put(with_query(second, digest=digest(data)), params=data, headers=auth, status=201)
    start(testapp, auth)


def test_the_cap_is_per_account(testapp, auth, make_user):
    fill(testapp, auth)
    make_user("bob", "another good password")
    start(testapp, basic("bob", "another good password"))


def test_monolithic_pushes_and_mounts_still_work_at_the_cap(testapp, auth):
    source = push_blob(testapp, auth, "limits/source", b"a layer to mount")  # its session is finished: no slot
    fill(testapp, auth)
    data = b"pushed whole"
    monolithic = testapp.post(
        with_query("/v2/limits/app/blobs/uploads/", digest=digest(data)),
        params=data,
        headers=auth,
        content_type="application/octet-stream",
        status=201,
    )
    assert monolithic.headers["Docker-Content-Digest"] == digest(data)
    testapp.post(f"/v2/limits/app/blobs/uploads/?mount={source}&from=limits/source", headers=auth, status=201)
    testapp.post(f"/v2/limits/other/blobs/uploads/?mount={source}", headers=auth, status=201)
    # A mount that cannot happen answers with a new session, and that one counts.
    refused = testapp.post(f"/v2/limits/app/blobs/uploads/?mount={digest(b'absent')}", headers=auth, status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]


def test_the_cap_is_a_setting_of_a_hundred_by_default():
    base = {"stevedore.database_url": "sqlite://", "stevedore.storage_url": "file:///tmp/unused"}
    environ = {"STEVEDORE_SECRET_KEY": SECRET}
    assert Settings.from_mapping(base, environ=environ).max_open_uploads_per_account == 100
    configured = Settings.from_mapping({**base, "stevedore.max_open_uploads_per_account": "7"}, environ=environ)
    assert configured.max_open_uploads_per_account == 7


def test_aborting_an_account_s_uploads_removes_its_folders_and_rows(testapp, auth, make_user, components, settings, db):
    alice = _account(components, "alice")
    make_user("bob", "another good password")
    bob_auth = basic("bob", "another good password")
    alice_uploads = fill(testapp, auth)
    testapp.patch(path_of(alice_uploads[0]), params=b"half a layer", headers=auth, status=202)
    bob_upload = start(testapp, bob_auth).headers["Location"]
    assert len(upload_folders(settings)) == CAP + 1

    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        service = RegistryService(SqlRegistryStore(session), components.blob_store, components.clock)
        assert service.abort_account_uploads(alice.id) == CAP
    session.close()

    bob_id = bob_upload.rstrip("/").rsplit("/", 1)[-1]
    assert upload_folders(settings) == {bob_id}
    assert count_rows(db, uploads) == 1
    for location in alice_uploads:
        testapp.get(path_of(location), headers=auth, status=404)
    testapp.get(path_of(bob_upload), headers=bob_auth, status=204)


def _account(components, username):
    with components.read_sessions() as session:
        account = SqlAccountStore(session).by_username(username)
    assert account is not None
    return account

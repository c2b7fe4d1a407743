"""The cap on open upload sessions per account (stevedore.max_open_uploads_per_account), the reclaiming of abandoned
sessions at the cap (stevedore.abandoned_upload_seconds), and aborting an account's uploads."""

from __future__ import annotations

import dataclasses
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
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
ABANDONED = 5400  # not the default, so the setting is seen to reach the app


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, max_open_uploads_per_account=CAP, abandoned_upload_seconds=ABANDONED)


def upload_folders(settings) -> set[str]:
    folder = os.path.join(settings.storage_path, "uploads")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def start(testapp, auth, repo="limits/app", status=202):
    return testapp.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=status)


def opened(testapp, auth, repo="limits/app"):
    """A session that holds a slot: a POST writes nothing, its first PATCH opens it (its row, its folder)."""
    location = start(testapp, auth, repo).headers["Location"]
    testapp.patch(path_of(location), params=b"", headers=auth, status=202)
    return location


def fill(testapp, auth, repo="limits/app"):
    return [opened(testapp, auth, repo) for _ in range(CAP)]


def test_a_post_below_the_cap_takes_no_slot_and_the_first_patch_past_it_is_refused(testapp, auth, settings, db):
    tickets = [start(testapp, auth).headers["Location"] for _ in range(CAP + 2)]
    assert count_rows(db, uploads) == 0 and upload_folders(settings) == set()
    for location in tickets[:CAP]:
        testapp.patch(path_of(location), params=b"bytes", headers=auth, status=202)
    refused = testapp.patch(path_of(tickets[CAP]), params=b"one too many", headers=auth, status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    assert count_rows(db, uploads) == CAP and len(upload_folders(settings)) == CAP
    data = b"sent whole in the closing PUT"
    testapp.put(with_query(tickets[CAP + 1], digest=digest(data)), params=data, headers=auth, status=201)


def test_upload_past_the_cap_is_429_toomanyrequests_and_opens_nothing(testapp, auth, settings, db):
    fill(testapp, auth)
    folders = upload_folders(settings)
    refused = start(testapp, auth, "limits/elsewhere", status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    message = refused.json["errors"][0]["message"]
    assert f"{CAP} uploads are open" in message and "DELETE" in message, message
    assert refused.json["errors"][0]["detail"].keys() == {"open", "limit", "reclaimable_at"}
    assert refused.json["errors"][0]["detail"]["open"] == CAP
    assert count_rows(db, uploads) == CAP
    assert upload_folders(settings) == folders and len(folders) == CAP


def test_cancelling_or_finishing_an_upload_frees_its_slot(testapp, auth):
    first, second, _third = fill(testapp, auth)
    start(testapp, auth, status=429)
    testapp.delete(path_of(first), headers=auth, status=204)
    opened(testapp, auth)
    start(testapp, auth, status=429)
    data = b"finished"
    testapp.put(with_query(second, digest=digest(data)), params=data, headers=auth, status=201)
    opened(testapp, auth)


def test_the_cap_is_per_account(testapp, auth, make_user):
    fill(testapp, auth)
    make_user("bob", "another good password")
    start(testapp, basic("bob", "another good password"), "bob/app")


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


def test_the_abandoned_age_is_a_setting_of_an_hour_by_default():
    base = {"stevedore.database_url": "sqlite://", "stevedore.storage_url": "file:///tmp/unused"}
    environ = {"STEVEDORE_SECRET_KEY": SECRET}
    assert Settings.from_mapping(base, environ=environ).abandoned_upload_seconds == 3600
    configured = Settings.from_mapping({**base, "stevedore.abandoned_upload_seconds": "60"}, environ=environ)
    assert configured.abandoned_upload_seconds == 60


def upload_id(location: str) -> str:
    """The session's id (its row's, its folder's): the first part of the ticket in the URL."""
    return location.rstrip("/").rsplit("/", 1)[-1].split(".")[0]


def backdate(db, location: str, seconds: float) -> None:
    started = datetime.now(UTC) - timedelta(seconds=seconds)
    db.execute(sa.update(uploads).where(uploads.c.id == upload_id(location)).values(created_at=started))
    db.commit()


def test_at_the_cap_abandoned_uploads_are_reclaimed_oldest_first(testapp, auth, settings, db):
    """docker never cancels a failed upload: without reclaiming, an account at the cap would stay refused for good."""
    oldest, older, recent = fill(testapp, auth)
    testapp.patch(path_of(oldest), params=b"half a layer", headers=auth, status=202)
    backdate(db, oldest, 3 * 3600)
    backdate(db, older, 2 * 3600)
    backdate(db, recent, 3000)  # not abandoned yet
    fresh = opened(testapp, auth, "limits/elsewhere")
    assert upload_folders(settings) == {upload_id(recent), upload_id(fresh)}
    assert count_rows(db, uploads) == 2
    testapp.get(path_of(oldest), headers=auth, status=404)
    testapp.patch(path_of(older), params=b"too late", headers=auth, status=404)
    testapp.get(path_of(recent), headers=auth, status=204)
    opened(testapp, auth)  # the second slot freed
    refused = start(testapp, auth, status=429)  # `recent` is 40 minutes from abandoned
    message = refused.json["errors"][0]["message"]
    waiting = re.search(r"counts as abandoned after .* UTC \(in (\d+) seconds\)", message)
    assert waiting and ABANDONED - 3000 - 10 <= int(waiting.group(1)) <= ABANDONED - 3000, message
    assert refused.headers["Retry-After"] == waiting.group(1)


def test_reclaiming_leaves_other_accounts_alone(testapp, auth, make_user, settings, db):
    make_user("bob", "another good password")
    bob_auth = basic("bob", "another good password")
    bobs = [opened(testapp, bob_auth, "bob/app") for _ in range(CAP)]
    for location in bobs:
        backdate(db, location, 2 * 3600)
    fill(testapp, auth)
    start(testapp, auth, status=429)
    assert {upload_id(location) for location in bobs} <= upload_folders(settings)
    start(testapp, bob_auth, "bob/app")
    assert not {upload_id(location) for location in bobs} & upload_folders(settings)


def test_forgetting_an_account_s_uploads_then_aborting_their_bytes(testapp, auth, make_user, components, settings, db):
    alice = _account(components, "alice")
    make_user("bob", "another good password")
    bob_auth = basic("bob", "another good password")
    alice_uploads = fill(testapp, auth)
    testapp.patch(path_of(alice_uploads[0]), params=b"half a layer", headers=auth, status=202)
    bob_upload = opened(testapp, bob_auth, "bob/app")
    assert len(upload_folders(settings)) == CAP + 1

    session = components.write_sessions()
    service = RegistryService(SqlRegistryStore(session), components.blob_store, components.clock)
    with transaction.manager:
        join_transaction(session)
        listed = service.account_uploads(alice.id)
        assert {u.id for u in listed} == {upload_id(x) for x in alice_uploads}
        assert [(u.created_at, u.id) for u in listed] == sorted((u.created_at, u.id) for u in listed)
        upload_ids = service.account_upload_ids(alice.id)
        assert sorted(upload_ids) == sorted(upload_id(x) for x in alice_uploads)
        service.forget_uploads(upload_ids)
    session.close()
    assert count_rows(db, uploads) == 1
    assert len(upload_folders(settings)) == CAP + 1  # the bytes go once the rows' removal has committed
    service.abort_upload_bytes(upload_ids)

    assert upload_folders(settings) == {upload_id(bob_upload)}
    for location in alice_uploads:
        testapp.get(path_of(location), headers=auth, status=404)
    testapp.get(path_of(bob_upload), headers=bob_auth, status=204)


def _account(components, username):
    with components.read_sessions() as session:
        account = SqlAccountStore(session).by_username(username)
    assert account is not None
    return account

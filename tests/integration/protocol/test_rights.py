"""Namespace rights over /v2/, with Basic credentials and Bearer tokens, on both databases: who may push, delete and
mount where under the default, private and open models; the claim of a first push; and that a refused push leaves
nothing behind."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction, make_session_factory
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables import manifests, namespace_members, namespaces, repositories, repository_blobs, tags
from stevedore.domain.access import Access, AccessRules, Action
from stevedore.domain.errors import Denied
from stevedore.domain.model import RepositoryName
from stevedore.domain.namespaces import NamespaceService, Right
from tests.fakes import FixedClock
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import (
    OCI_MANIFEST,
    basic,
    bearer,
    digest,
    error_codes,
    parse_challenge,
    path_of,
    push_blob,
    push_image,
    put_manifest,
    upload_id,
    with_query,
)

PASSWORD = "a long enough password"


@pytest.fixture
def people(make_user):
    """ada claims `team` by her first push; paula may pull there; sam is nobody there; boss is an administrator."""
    made = {name: basic(name, PASSWORD) for name in ("ada", "paula", "sam")}
    for name in made:
        make_user(name, PASSWORD)
    make_user("boss", PASSWORD, admin=True)
    made["boss"] = basic("boss", PASSWORD)
    return made


def rules(components, model="default", claiming=True):
    components.settings = dataclasses.replace(components.settings, access_model=model, namespace_claiming=claiming)


def administer(components, action, *args):
    """A NamespaceService call in its own transaction, as `stevedore namespace …` makes it."""
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        getattr(NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), components.clock), action)(*args)
    session.close()


@pytest.fixture
def team(testapp, components, people):
    """team/app, pushed by ada (her first push claims `team`), with paula as a pull member."""
    pushed = push_image(testapp, people["ada"], "team/app", "v1", seed="team")
    administer(components, "add_member", "team", "paula", Right.PULL)
    return pushed


def token(testapp, credentials, *scopes):
    """A Bearer header for the scopes, and what the token endpoint granted ({name: actions})."""
    query = urlencode([("service", service_of(testapp)), *(("scope", s) for s in scopes)])
    body = testapp.get(f"/v2/token?{query}", headers=credentials, status=200).json
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    return bearer(body["token"]), {entry["name"]: set(entry["actions"]) for entry in claims["access"]}


def service_of(testapp):
    return parse_challenge(testapp.get("/v2/", status=401).headers["WWW-Authenticate"])[1]["service"]


def rows(db):
    return {table.name: count_rows(db, table) for table in (repositories, repository_blobs, manifests, tags)}


def denied(response):
    assert response.status_int == 403 and error_codes(response) == ["DENIED"], response
    return response


def refused_writes(testapp, credentials, repo, existing):
    """Every way to write into `repo`: each refused with 403 DENIED."""
    data = b"a layer nobody may leave here"
    denied(testapp.post(f"/v2/{repo}/blobs/uploads/", headers=credentials, status=403))
    denied(testapp.post(f"/v2/{repo}/blobs/uploads/?digest={digest(data)}", params=data, headers=credentials,
                        content_type="application/octet-stream", status=403))  # fmt: skip
    denied(put_manifest(testapp, credentials, repo, "evil", existing.body, OCI_MANIFEST, status=403))
    denied(testapp.delete(f"/v2/{repo}/manifests/v1", headers=credentials, status=403))
    denied(testapp.delete(f"/v2/{repo}/manifests/{existing.digest}", headers=credentials, status=403))
    denied(testapp.delete(f"/v2/{repo}/blobs/{digest(existing.blobs[0])}", headers=credentials, status=403))


# --- Basic ------------------------------------------------------------------------------------------------------------
def test_a_pull_member_and_a_stranger_cannot_push_or_delete_and_leave_nothing(testapp, people, team, db):
    before = rows(db)
    for who in ("paula", "sam"):
        testapp.get(f"/v2/team/app/manifests/{team.digest}", headers=people[who], status=200)  # default: all pull
        refused_writes(testapp, people[who], "team/app", team)
        refused_writes(testapp, people[who], "team/other", team)  # a new repository in the claimed namespace
    assert rows(db) == before
    testapp.get("/v2/team/app/manifests/v1", headers=people["sam"], status=200)
    testapp.get("/v2/team/other/tags/list", headers=people["ada"], status=404)


def test_a_stranger_cannot_mount_a_blob_into_a_claimed_namespace(testapp, people, team, db):
    own = push_blob(testapp, people["sam"], "sam/src", b"sam's layer")
    before = rows(db)
    for query in (f"mount={own}&from=sam/src", f"mount={digest(team.blobs[1])}&from=team/app", f"mount={own}"):
        denied(testapp.post(f"/v2/team/app/blobs/uploads/?{query}", headers=people["sam"], status=403))
    assert rows(db) == before
    testapp.head(f"/v2/team/app/blobs/{own}", headers=people["ada"], status=404)


def test_under_private_a_mount_from_a_repository_the_caller_cannot_pull_reveals_nothing(
    testapp, components, people, db
):
    rules(components, "private")
    secret = push_blob(testapp, people["sam"], "sam/secret", b"sam's secret layer")
    testapp.head(f"/v2/sam/secret/blobs/{secret}", headers=people["ada"], status=403)
    for query in (f"mount={secret}&from=sam/secret", f"mount={secret}"):
        response = testapp.post(f"/v2/ada/app/blobs/uploads/?{query}", headers=people["ada"], status=202)
        assert "Docker-Content-Digest" not in response.headers and "WWW-Authenticate" not in response.headers
        assert upload_id(response.headers["Location"]) and response.headers["Range"] == "0-0"
    testapp.head(f"/v2/ada/app/blobs/{secret}", headers=people["ada"], status=404)
    assert count_rows(db, repository_blobs) == 1  # only sam's own link


def test_the_first_push_into_a_free_namespace_claims_it_and_its_admin_adds_members(testapp, components, people, db):
    push_image(testapp, people["ada"], "fresh/app", "v1", seed="fresh")
    db.rollback()
    claimed = db.execute(
        sa.select(namespaces.c.name, namespace_members.c.right).join(namespace_members)
    ).all()  # fmt: skip
    assert [tuple(row) for row in claimed] == [("fresh", "admin")]
    denied(testapp.post("/v2/fresh/app/blobs/uploads/", headers=people["sam"], status=403))
    administer(components, "add_member", "fresh", "sam", Right.PUSH)
    push_image(testapp, people["sam"], "fresh/app", "v2", seed="sam")
    testapp.delete("/v2/fresh/app/manifests/v2", headers=people["sam"], status=202)
    bare = push_image(testapp, people["sam"], "tool", "v1", seed="bare")  # a bare name claims itself
    denied(testapp.delete(f"/v2/tool/manifests/{bare.digest}", headers=people["ada"], status=403))
    assert count_rows(db, namespaces) == 2


def test_with_claiming_off_a_free_namespace_refuses_the_push_and_keeps_nothing(testapp, components, people, db):
    rules(components, claiming=False)
    refused = {"repositories": 0, "repository_blobs": 0, "manifests": 0, "tags": 0}
    denied(testapp.post("/v2/free/app/blobs/uploads/", headers=people["ada"], status=403))
    denied(put_manifest(testapp, people["ada"], "free/app", "v1", b"{}", OCI_MANIFEST, status=403))
    assert rows(db) == refused and count_rows(db, namespaces) == 0
    push_image(testapp, people["ada"], "ada/app", "v1")  # her own namespace still


def test_library_is_reserved_even_for_a_first_push_but_not_for_administrators(testapp, people, db):
    denied(testapp.post("/v2/library/alpine/blobs/uploads/", headers=people["ada"], status=403))
    denied(testapp.post("/v2/library/blobs/uploads/", headers=people["ada"], status=403))
    assert count_rows(db, namespaces) == 0 and count_rows(db, repositories) == 0
    push_image(testapp, people["boss"], "library/alpine", "3")
    assert count_rows(db, namespaces) == 0  # an administrator's push claims nothing


def test_administrators_may_do_everything_everywhere(testapp, components, people, team):
    for model in ("default", "private"):
        rules(components, model)
        pushed = push_image(testapp, people["boss"], "team/app", f"by-root-{model}", seed=model)
        push_image(testapp, people["boss"], "sam/app", "v1", seed=f"sam-{model}")
        testapp.get(f"/v2/team/app/manifests/{team.digest}", headers=people["boss"], status=200)
        testapp.delete(f"/v2/team/app/manifests/{pushed.digest}", headers=people["boss"], status=202)
        testapp.delete(f"/v2/team/app/blobs/{digest(pushed.blobs[0])}", headers=people["boss"], status=202)


def test_under_open_everyone_pushes_and_deletes_everywhere_and_nothing_is_claimed(testapp, components, people, team):
    rules(components, "open")
    pushed = push_image(testapp, people["sam"], "team/app", "sams", seed="open")
    testapp.delete(f"/v2/team/app/manifests/{pushed.digest}", headers=people["sam"], status=202)
    push_image(testapp, people["sam"], "ada/app", "v1", seed="into-ada")
    push_image(testapp, people["paula"], "brandnew/app", "v1", seed="new")
    with components.write_sessions() as session:
        assert [row.name for row in session.execute(sa.select(namespaces.c.name))] == ["team"]


def test_under_private_the_catalog_lists_only_what_the_caller_may_pull(testapp, components, people, team):
    push_image(testapp, people["sam"], "sam/tools", "v1", seed="sam")
    push_image(testapp, people["ada"], "ada/own", "v1", seed="ada")
    rules(components, "private")

    def catalog(who):
        return testapp.get("/v2/_catalog", headers=people[who], status=200).json["repositories"]

    assert catalog("sam") == ["sam/tools"]
    assert catalog("paula") == ["team/app"]
    assert catalog("ada") == ["ada/own", "team/app"]
    assert catalog("boss") == ["ada/own", "sam/tools", "team/app"]
    testapp.get(f"/v2/team/app/manifests/{team.digest}", headers=people["sam"], status=403)
    rules(components, "default")
    assert catalog("sam") == ["ada/own", "sam/tools", "team/app"]


# --- Bearer -----------------------------------------------------------------------------------------------------------
def test_the_token_endpoint_grants_a_pull_member_no_push_and_the_push_is_refused(testapp, people, team, db):
    before = rows(db)
    for who in ("paula", "sam"):
        auth, granted = token(testapp, people[who], "repository:team/app:pull,push,delete")
        assert granted == {"team/app": {"pull"}}
        testapp.get(f"/v2/team/app/manifests/{team.digest}", headers=auth, status=200)
        refused = testapp.post("/v2/team/app/blobs/uploads/", headers=auth, status=403)
        assert error_codes(refused) == ["DENIED"]
        denied(testapp.delete(f"/v2/team/app/manifests/{team.digest}", headers=auth, status=403))
        denied(put_manifest(testapp, auth, "team/app", "evil", team.body, OCI_MANIFEST, status=403))
        mount = f"mount={digest(team.blobs[0])}&from=team/app"
        denied(testapp.post(f"/v2/team/new/blobs/uploads/?{mount}", headers=auth, status=403))
    assert rows(db) == before


def test_a_token_for_a_free_namespace_carries_push_and_the_push_claims_it(testapp, people, db):
    auth, granted = token(testapp, people["sam"], "repository:sams-team/app:pull,push")
    assert granted == {"sams-team/app": {"pull", "push"}}
    assert count_rows(db, namespaces) == 0  # asking for a token claims nothing
    start = testapp.post("/v2/sams-team/app/blobs/uploads/", headers=auth, status=202)
    data = b"sam's first layer"
    testapp.put(with_query(start.headers["Location"], digest=digest(data)), params=data, headers=auth,
                content_type="application/octet-stream", status=201)  # fmt: skip
    assert count_rows(db, namespaces) == 1
    _, later = token(testapp, people["ada"], "repository:sams-team/app:pull,push")
    assert later == {"sams-team/app": {"pull"}}


def test_a_right_removed_ends_push_with_an_already_issued_token_at_once(testapp, components, people, team, db):
    administer(components, "add_member", "team", "sam", Right.PUSH)
    auth, granted = token(testapp, people["sam"], "repository:team/app:pull,push")
    assert granted == {"team/app": {"pull", "push"}}
    started = testapp.post("/v2/team/app/blobs/uploads/", headers=auth, status=202)
    administer(components, "remove_member", "team", "sam")
    before = rows(db)
    denied(testapp.post("/v2/team/app/blobs/uploads/", headers=auth, status=403))
    data = b"finished after the right was gone"
    denied(testapp.put(with_query(start_location(started), digest=digest(data)), params=data, headers=auth,
                       content_type="application/octet-stream", status=403))  # fmt: skip
    assert rows(db) == before
    testapp.get(f"/v2/team/app/manifests/{team.digest}", headers=auth, status=200)  # pull stays (default model)


def start_location(response):
    return path_of(response.headers["Location"])


# --- a real race ------------------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_transactions_claiming_one_namespace_one_wins_the_other_is_denied(components, make_user):
    ada, sam = make_user("ada", PASSWORD), make_user("sam", PASSWORD)
    sessions = make_session_factory(components.engine)
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    name = RepositoryName.parse("contested/app")

    first = sessions()
    Access(SqlNamespaceStore(first), AccessRules()).claim_for_push(ada, name, clock)  # holds the new row's key

    outcome: list[str] = []

    def second_claim() -> None:
        with sessions() as second:
            access = Access(SqlNamespaceStore(second), AccessRules())
            assert access.may(sam, Action.PUSH, name)  # free when it looked: the claim decides
            try:
                access.claim_for_push(sam, name, clock)
            except Denied:
                outcome.append("denied")
                second.rollback()
            else:
                outcome.append("claimed")
                second.commit()

    racer = threading.Thread(target=second_claim)
    racer.start()
    racer.join(timeout=1.0)
    assert racer.is_alive(), "the second claim did not wait for the first transaction"
    first.commit()
    first.close()
    racer.join(timeout=30)
    assert outcome == ["denied"]
    with sessions() as check:
        store = SqlNamespaceStore(check)
        assert [m.username for m in store.members("contested")] == ["ada"]
        assert store.right_of("contested", sam.id) is None

"""A tag's history page and restoring from it, on SQLite and PostgreSQL: newest first with keyset pages, links to the
manifests still held, restore buttons only for those with the push right; a restore moves the tag (as /v2/ then
answers), keeps a `restore` move and an audit event; refusals (no right, no CSRF token, a digest gone or invalid, a
rule that denies) are clear 4xx pages that change nothing."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.tables import repositories, tags
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_tag_history import tag_history
from stevedore.domain.errors import Denied
from stevedore.domain.lifecycle import NoLifecycle, TagChange
from stevedore.web.ui import rules
from tests.integration.protocol.helpers import basic, push_image
from tests.integration.web.helpers import csrf_token, log_in
from tests.integration.web.test_repository_pages import private

ALICE = ("alice", "correct horse battery")
BOB = ("bob", "another good password")
HISTORY = "/r/alice/app/-/tags/v1/history"
RESTORE = "/r/alice/app/-/tags/v1/restore"


@pytest.fixture
def alice(make_user):
    make_user(*ALICE)
    return basic(*ALICE)


@pytest.fixture
def bob(make_user):
    make_user(*BOB)
    return basic(*BOB)


def pulled_digest(testapp, auth, tag="v1"):
    response = testapp.get(f"/v2/alice/app/manifests/{tag}", headers=auth, status=200)
    return response.headers["Docker-Content-Digest"]


def restore_forms(page):
    return [f for f in page.forms.values() if f.action.endswith("/restore")]


def moves(db):
    db.rollback()
    rows = db.execute(
        sa.select(tag_history.c.old_digest, tag_history.c.new_digest, tag_history.c.actor, tag_history.c.cause)
        .where(tag_history.c.tag == "v1")
        .order_by(tag_history.c.id)
    )
    return [tuple(row) for row in rows]


def restored_events(db):
    db.rollback()
    return db.execute(
        sa.select(audit_events.c.actor_name, audit_events.c.target, audit_events.c.detail).where(
            audit_events.c.action == "tag_restored"
        )
    ).all()


def short(digest):
    return digest[: len("sha256:") + 12]


def test_the_page_shows_the_tag_now_and_its_moves_newest_first_with_links(testapp, alice):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    testapp.delete(f"/v2/alice/app/manifests/{one.digest}", headers=alice, status=202)  # one's manifest is gone
    log_in(testapp, *ALICE)
    repository_page = testapp.get("/r/alice/app", status=200).text
    assert f'href="{HISTORY}"' in repository_page
    assert f'href="{HISTORY}"' in testapp.get(f"/r/alice/app/-/manifests/{two.digest}", status=200).text
    page = testapp.get(HISTORY, status=200).text
    lead = page.split('class="lead"')[1].split("</p>")[0]
    assert "Points at" in lead and short(two.digest) in lead and "alice" in lead
    rows = page.split('<li class="tag entry">')[1:]
    assert len(rows) == 2
    newest, oldest = rows
    assert ">pushed<" in newest and newest.index(short(one.digest)) < newest.index(short(two.digest))
    assert f'href="/r/alice/app/-/manifests/{two.digest}"' in newest  # held: a link
    assert f'href="/r/alice/app/-/manifests/{one.digest}"' not in page and "(gone)" in newest and "(gone)" in oldest
    assert ">alice<" in newest
    # Nothing to restore: one is gone, two is where the tag is.
    assert not restore_forms(testapp.get(HISTORY))


def test_the_page_pages_older_moves_by_fifty(testapp, db, alice):
    push_image(testapp, alice, "alice/app", "v1")
    repository_id = db.execute(sa.select(repositories.c.id)).scalar_one()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    db.execute(
        sa.insert(tag_history),
        [
            {
                "repository_id": repository_id,
                "tag": "v1",
                "old_digest": None,
                "new_digest": f"sha256:{i:064x}",
                "actor": f"user{i}",
                "cause": "push",
                "at": t0 + timedelta(minutes=i // 2),  # two moves a minute: the id breaks the tie
            }
            for i in range(60)
        ],
    )
    db.commit()
    log_in(testapp, *ALICE)
    first = testapp.get(HISTORY, status=200)
    assert first.text.count('<li class="tag entry">') == 50
    actors = re.findall(r'<dd class="pusher">(user\d+|alice)</dd>', first.text)
    assert actors[0] == "alice" and actors[1:] == [f"user{i}" for i in range(59, 10, -1)]
    older = first.click(linkid=None, href=r"before=", index=0)
    second_actors = re.findall(r'<dd class="pusher">(user\d+)</dd>', older.text)
    assert second_actors == [f"user{i}" for i in range(10, -1, -1)]
    assert 'rel="next"' not in older.text and "« Newest" in older.text
    assert testapp.get(HISTORY + "?before=junk", status=200).text.count('<li class="tag entry">') == 50
    past_the_end = testapp.get(HISTORY + "?before=1~1", status=200).text
    assert "No older moves" in past_the_end


def test_a_restore_puts_the_tag_back_and_keeps_a_move_and_an_audit_event(testapp, db, alice):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    log_in(testapp, *ALICE)
    page = testapp.get(HISTORY, status=200)
    (form,) = restore_forms(page)  # one only: two is where the tag points
    assert form["digest"].value == one.digest
    done = form.submit(status=303)
    assert done.headers["Location"].endswith(HISTORY)
    after = done.follow(status=200).text
    assert f"The tag v1 points at {short(one.digest)} again." in after
    assert pulled_digest(testapp, alice) == one.digest
    assert moves(db)[-1] == (two.digest, one.digest, "alice", "restore")
    assert restored_events(db) == [("alice", "alice/app:v1", f"to {one.digest} from {two.digest}")]
    assert ">restored<" in after
    assert [f["digest"].value for f in restore_forms(testapp.get(HISTORY))] == [two.digest]


def test_restoring_where_the_tag_already_points_changes_nothing(testapp, db, alice):
    one = push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *ALICE)
    token = csrf_token(testapp.get(HISTORY))
    done = testapp.post(RESTORE, {"csrf_token": token, "digest": one.digest}, status=303)
    assert "already points at" in done.follow().text
    assert len(moves(db)) == 1 and restored_events(db) == []


def test_a_deleted_tag_with_history_has_its_page_and_is_restorable(testapp, db, alice):
    one = push_image(testapp, alice, "alice/app", "v1")
    push_image(testapp, alice, "alice/app", "keep", seed="keep")  # the repository stays with another tag
    testapp.delete("/v2/alice/app/manifests/v1", headers=alice, status=202)
    testapp.get("/v2/alice/app/manifests/v1", headers=alice, status=404)
    log_in(testapp, *ALICE)
    page = testapp.get(HISTORY, status=200)
    assert "The tag does not exist now." in page.text and ">deleted<" in page.text
    forms = restore_forms(page)
    assert [f["digest"].value for f in forms] == [one.digest, one.digest]  # the deletion's, and the push's
    forms[0].submit(status=303)
    assert pulled_digest(testapp, alice) == one.digest
    assert moves(db)[-1] == (None, one.digest, "alice", "restore")
    assert restored_events(db) == [("alice", "alice/app:v1", f"to {one.digest} (the tag did not exist)")]


def test_an_unknown_tag_an_invalid_one_and_an_unpullable_repository_are_not_found(testapp, components, alice, bob):
    push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *ALICE)
    testapp.get("/r/alice/app/-/tags/never/history", status=404)
    testapp.get("/r/alice/app/-/tags/-bad-/history", status=404)
    testapp.get("/r/alice/nothing/-/tags/v1/history", status=404)
    token = csrf_token(testapp.get(HISTORY))
    testapp.post("/r/alice/nothing/-/tags/v1/restore", {"csrf_token": token, "digest": "x"}, status=404)
    private(components)
    testapp.post("/logout", {"csrf_token": token}, status=303)
    log_in(testapp, *BOB)
    testapp.get(HISTORY, status=404)  # under `private` bob may not pull alice's repository
    testapp.post(RESTORE, {"csrf_token": csrf_token(testapp.get("/")), "digest": "x"}, status=404)


def test_with_only_the_pull_right_the_page_has_no_buttons_and_a_restore_is_forbidden(testapp, db, alice, bob):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    log_in(testapp, *BOB)  # the default model: bob may pull alice's repositories, not push into them
    page = testapp.get(HISTORY, status=200)
    assert '<li class="tag entry">' in page.text and not restore_forms(page) and "Restore" not in page.text
    refused = testapp.post(RESTORE, {"csrf_token": csrf_token(page), "digest": one.digest}, status=403)
    assert "Not allowed" in refused.text
    assert pulled_digest(testapp, alice) == two.digest and len(moves(db)) == 2 and restored_events(db) == []


def test_a_restore_without_the_csrf_token_is_refused(testapp, db, alice):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    log_in(testapp, *ALICE)
    testapp.post(RESTORE, {"digest": one.digest}, status=400)
    testapp.post(RESTORE, {"digest": one.digest, "csrf_token": "stale"}, status=400)
    assert pulled_digest(testapp, alice) == two.digest and len(moves(db)) == 2 and restored_events(db) == []


def test_restoring_a_digest_whose_manifest_was_deleted_says_so(testapp, db, alice):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    log_in(testapp, *ALICE)
    page = testapp.get(HISTORY)
    (form,) = restore_forms(page)  # shown while one is held …
    testapp.delete(f"/v2/alice/app/manifests/{one.digest}", headers=alice, status=202)  # … then deleted
    refused = form.submit(status=404)
    assert "is no longer in repository alice/app" in html.unescape(refused.text) and 'role="alert"' in refused.text
    assert "Nothing was changed." in refused.text and "Points at" in refused.text  # the history page again
    assert pulled_digest(testapp, alice) == two.digest
    assert len(moves(db)) == 2 and restored_events(db) == []


@pytest.mark.parametrize("digest", ["", "sha256:nothex", "md5:" + "0" * 32, "sha256:" + "A" * 64])
def test_an_invalid_digest_is_a_400_page(testapp, db, alice, digest):
    push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *ALICE)
    token = csrf_token(testapp.get(HISTORY))
    refused = testapp.post(RESTORE, {"csrf_token": token, "digest": digest}, status=400)
    assert "not a digest" in refused.text
    assert len(moves(db)) == 1


class DenyEveryMove(NoLifecycle):
    """Stands in for an immutable-tag rule: it refuses once the store moved the tag, as rules do."""

    def before_tag_change(self, change: TagChange) -> None:
        raise Denied(f"the tag {change.tag} is immutable (rule v*)")


def test_a_restore_a_rule_denies_is_a_403_page_and_changes_nothing(testapp, db, alice, monkeypatch):
    one = push_image(testapp, alice, "alice/app", "v1", seed="one")
    two = push_image(testapp, alice, "alice/app", "v1", seed="two")
    log_in(testapp, *ALICE)
    (form,) = restore_forms(testapp.get(HISTORY))
    monkeypatch.setattr(rules, "lifecycle_part", lambda request: DenyEveryMove())
    refused = form.submit(status=403)
    assert "was not restored: the tag v1 is immutable (rule v*)" in refused.text
    # The page is read as committed: the tag still at two, though the refused transaction had moved it.
    lead = refused.text.split('class="lead"')[1].split("</p>")[0]
    assert short(two.digest) in lead and short(one.digest) not in lead
    monkeypatch.undo()
    assert pulled_digest(testapp, alice) == two.digest
    db.rollback()
    assert db.execute(sa.select(tags.c.pushed_by)).scalar_one() == "alice"
    assert len(moves(db)) == 2 and restored_events(db) == []

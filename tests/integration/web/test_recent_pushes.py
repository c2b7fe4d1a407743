"""The front page's latest pushes: newest first with who pushed, only what the caller may pull (also under
`private`), a fixed number of queries, escaped; the anonymous and setup front page stay as they were."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from stevedore.adapters.sql.tables import tags
from stevedore.domain.namespaces import Right
from tests.integration.protocol.helpers import push_image
from tests.integration.web.helpers import csrf_token, log_in
from tests.integration.web.test_repository_pages import (
    ALICE,
    BOB,
    add_tags,
    alice,  # noqa: F401 (fixtures)
    bob,  # noqa: F401
    count_queries,
    give_right,
    private,
)


def pushes(page) -> list[tuple[str, str, str]]:
    """(repository, tag, pusher) of each row of the recent pushes, in order."""
    rows = page.html.select("section.recent-pushes tbody tr")
    return [tuple(td.text.strip() for td in row.select("td")[:3]) for row in rows]


def test_the_latest_pushes_are_listed_newest_first_with_who_and_links(testapp, components, alice, bob, db):  # noqa: F811
    older = push_image(testapp, alice, "alice/app", "v1")
    push_image(testapp, bob, "bob/tool", "latest")
    db.execute(sa.update(tags).where(tags.c.name == "v1").values(updated_at=components.clock.now() - timedelta(1)))
    db.commit()
    log_in(testapp, *ALICE)
    home = testapp.get("/", status=200)
    assert "Recent pushes" in home.text
    assert pushes(home) == [("bob/tool", "latest", "bob"), ("alice/app", "v1", "alice")]
    assert f'href="/r/alice/app/-/manifests/{older.digest}"' in home.text and 'href="/r/bob/tool"' in home.text


def test_only_the_ten_latest_are_shown_in_a_fixed_number_of_queries(testapp, components, alice, db):  # noqa: F811
    push_image(testapp, alice, "alice/app", "latest")
    log_in(testapp, *ALICE)
    testapp.get("/")  # the session's last-seen write happens once
    few = count_queries(components, lambda: testapp.get("/", status=200))
    add_tags(db, "alice/app", 300, components.clock.now() - timedelta(hours=1), step=timedelta(seconds=1))
    page = testapp.get("/", status=200)
    assert [tag for _repo, tag, _who in pushes(page)] == ["latest", *(f"t{i:04d}" for i in range(9))]
    many = count_queries(components, lambda: testapp.get("/", status=200))
    assert len(many) == len(few), many


def test_under_private_only_namespaces_with_a_right_and_ones_own_are_listed(
    testapp,
    components,
    alice,  # noqa: F811
    bob,  # noqa: F811
    make_user,
):
    push_image(testapp, alice, "alice/secret", "v1")
    push_image(testapp, bob, "bob/own", "v1")
    push_image(testapp, bob, "team/shared", "v1")
    push_image(testapp, bob, "teamwork/other", "v1")
    push_image(testapp, bob, "bare", "v1")
    log_in(testapp, *ALICE)
    everything = {repo for repo, _tag, _who in pushes(testapp.get("/"))}  # default model: everyone pulls all
    assert everything == {"alice/secret", "bob/own", "team/shared", "teamwork/other", "bare"}
    private(components)
    give_right(components, "team", "alice", Right.PULL)  # bob claimed `team` by his first push
    page = testapp.get("/", status=200)
    assert {repo for repo, _tag, _who in pushes(page)} == {"alice/secret", "team/shared"}
    assert "bob/own" not in page.text and "teamwork" not in page.text and "bare" not in page.text

    make_user("boss", "administrator password", admin=True)
    testapp.post("/logout", {"csrf_token": csrf_token(testapp.get("/"))}, status=303)
    log_in(testapp, "boss", "administrator password")
    assert {repo for repo, _tag, _who in pushes(testapp.get("/"))} == everything

    testapp.post("/logout", {"csrf_token": csrf_token(testapp.get("/"))}, status=303)
    log_in(testapp, *BOB)  # his own namespace and those his first pushes claimed
    assert {repo for repo, _tag, _who in pushes(testapp.get("/"))} == {
        "bob/own",
        "team/shared",
        "teamwork/other",
        "bare",
    }


def test_nothing_to_show_says_so_and_the_anonymous_front_page_has_no_pushes(testapp, make_user, alice):  # noqa: F811
    log_in(testapp, *ALICE)
    assert "Nothing pushed yet that you may pull." in testapp.get("/", status=200).text
    push_image(testapp, alice, "alice/app", "v1")
    testapp.post("/logout", {"csrf_token": csrf_token(testapp.get("/"))}, status=303)
    anonymous = testapp.get("/", status=200).text
    assert "Recent pushes" not in anonymous and "alice/app" not in anonymous and "Log in" in anonymous

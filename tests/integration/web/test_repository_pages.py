"""The repository pages: the list (rights, search, paging), a repository's tags (sort, sizes, platforms, a bounded
number of queries), a manifest (config, referrers), escaping, the 404 that is no oracle, and deletion's refusals."""

from __future__ import annotations

import dataclasses
import html
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables import accounts, manifests, repositories, tags
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.domain.browse import human_size
from stevedore.domain.namespaces import Right
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    basic,
    descriptor,
    image_manifest,
    index_manifest,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    to_json,
)
from tests.integration.web.helpers import csrf_token, log_in

ALICE = ("alice", "correct horse battery")
BOB = ("bob", "another good password")


@pytest.fixture
def alice(make_user):
    make_user(*ALICE)
    return basic(*ALICE)


@pytest.fixture
def bob(make_user):
    make_user(*BOB)
    return basic(*BOB)


def private(components):
    components.settings = dataclasses.replace(components.settings, access_model="private")


def give_right(components, namespace, username, right):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        account_id = session.execute(sa.select(accounts.c.id).where(accounts.c.username == username)).scalar_one()
        SqlNamespaceStore(session).set_member(namespace, account_id, right)
    session.close()


def image_with_config(app, auth, repo, tag, config: dict, layers=(b"layer one" * 100, b"layer two" * 300)):
    config_bytes = to_json(config)
    for blob in (config_bytes, *layers):
        push_blob(app, auth, repo, blob)
    body = image_manifest(descriptor(OCI_CONFIG, config_bytes), [descriptor(OCI_LAYER, layer) for layer in layers])
    put_manifest(app, auth, repo, tag, body, "application/vnd.oci.image.manifest.v1+json")
    return body, config_bytes, layers


def digest_of(body: bytes) -> str:
    from tests.integration.protocol.helpers import digest

    return digest(body)


def test_anonymous_visitors_are_sent_to_the_login_page(testapp, alice):
    push_image(testapp, alice, "alice/app")
    for path in ("/repositories", "/r/alice/app", "/r/alice/app/-/delete"):
        response = testapp.get(path, status=303)
        assert "/login?next=" in response.headers["Location"]


def test_the_list_shows_tag_counts_and_searches_and_pages(testapp, alice):
    push_image(testapp, alice, "alice/app", "1.0")
    push_image(testapp, alice, "alice/app", "2.0", seed="two")
    push_image(testapp, alice, "alice/tool", "latest")
    log_in(testapp, *ALICE)
    page = testapp.get("/repositories", status=200)
    assert 'href="/r/alice/app"' in page.text and 'href="/r/alice/tool"' in page.text
    row = page.text.split('href="/r/alice/app"')[1].split("</tr>")[0]
    assert '<td class="num">2</td>' in row and "UTC" in row
    found = testapp.get("/repositories?q=too", status=200)
    assert "alice/tool" in found.text and "alice/app<" not in found.text
    assert "No repository" in testapp.get("/repositories?q=zzz", status=200).text
    # `_` and `%` are plain characters in a search, not patterns
    assert "alice/app" not in testapp.get("/repositories?q=%25", status=200).text
    assert "alice/app" not in testapp.get("/repositories?q=_", status=200).text


def test_the_list_pages_by_fifty(testapp, alice, db, components):
    push_image(testapp, alice, "alice/r00")
    repo_id = db.execute(sa.select(repositories.c.id)).scalar_one()
    manifest = db.execute(sa.select(manifests).where(manifests.c.repository_id == repo_id)).one()
    now = components.clock.now()
    for i in range(1, 55):
        new_id = db.execute(
            sa.insert(repositories).values(name=f"alice/r{i:02d}", created_at=now).returning(repositories.c.id)
        ).scalar_one()
        db.execute(
            sa.insert(manifests).values(
                repository_id=new_id,
                digest=manifest.digest,
                media_type=manifest.media_type,
                size=manifest.size,
                content=manifest.content,
                created_at=now,
            )
        )
    db.commit()
    log_in(testapp, *ALICE)
    first = testapp.get("/repositories", status=200)
    assert "alice/r49" in first.text and "alice/r50" not in first.text and 'rel="next"' in first.text
    second = testapp.get("/repositories?page=2", status=200)
    assert "alice/r50" in second.text and "alice/r54" in second.text and "alice/r49<" not in second.text
    assert 'rel="next"' not in second.text and 'rel="prev"' in second.text
    assert testapp.get("/repositories?page=x", status=200).text.count("alice/r") >= 50


def test_under_private_the_list_shows_only_what_the_caller_may_pull(testapp, components, alice, bob, make_user):
    push_image(testapp, alice, "alice/secret")
    push_image(testapp, bob, "bob/own")
    push_image(testapp, bob, "team/shared")
    push_image(testapp, bob, "teamwork/other")
    private(components)
    give_right(components, "team", "alice", Right.PULL)  # bob claimed `team` by his first push

    log_in(testapp, *ALICE)
    page = testapp.get("/repositories", status=200)
    assert "alice/secret" in page.text and "team/shared" in page.text
    assert "bob/own" not in page.text and "teamwork/other" not in page.text
    testapp.get("/r/team/shared", status=200)
    testapp.get("/r/bob/own", status=404)

    make_user("boss", "administrator password", admin=True)
    testapp.post("/logout", {"csrf_token": csrf_token(testapp.get("/"))}, status=303)
    log_in(testapp, "boss", "administrator password")
    everything = testapp.get("/repositories", status=200).text
    assert all(n in everything for n in ("alice/secret", "bob/own", "team/shared", "teamwork/other"))


def test_unknown_and_not_pullable_repositories_get_the_same_404(testapp, components, alice, bob):
    push_image(testapp, bob, "bob/hidden")
    private(components)
    log_in(testapp, *ALICE)
    hidden = testapp.get("/r/bob/hidden", status=404)
    unknown = testapp.get("/r/bob/nothing", status=404)
    invalid = testapp.get("/r/Not..Valid", status=404)
    assert hidden.text == unknown.text == invalid.text
    digest = push_image(testapp, bob, "bob/hidden", "2").digest
    assert testapp.get(f"/r/bob/hidden/-/manifests/{digest}", status=404).text == hidden.text
    assert testapp.get(f"/r/bob/nothing/-/manifests/{digest}", status=404).text == hidden.text
    assert testapp.get("/r/bob/hidden/-/delete", status=404).text == hidden.text


def test_the_tags_page_shows_sizes_platforms_and_a_pull_line_and_sorts(testapp, components, alice, db):
    amd = push_image(testapp, alice, "alice/multi", None, seed="amd64")
    arm = push_image(testapp, alice, "alice/multi", None, seed="arm64", layer_count=3)
    index = index_manifest(
        [
            amd.descriptor(platform={"os": "linux", "architecture": "amd64"}),
            arm.descriptor(platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
            amd.descriptor(
                platform={"os": "unknown", "architecture": "unknown"},
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ]
    )
    put_manifest(testapp, alice, "alice/multi", "b-multi", index, "application/vnd.oci.image.index.v1+json")
    single = push_image(testapp, alice, "alice/multi", "a-single", seed="single")

    log_in(testapp, *ALICE)
    page = testapp.get("/r/alice/multi", status=200)
    text = page.text
    assert text.index(">a-single<") < text.index(">b-multi<")
    single_size = sum(len(b) for b in single.blobs)
    amd_size = sum(len(b) for b in amd.blobs)
    arm_size = sum(len(b) for b in arm.blobs)
    single_row = text.split(">a-single<")[1].split("</li>")[0]
    multi_row = text.split(">b-multi<")[1].split("</li>")[0]
    assert human_size(single_size) in single_row
    assert human_size(amd_size + arm_size) in multi_row
    assert "linux/amd64" in multi_row and "linux/arm64/v8" in multi_row and "unknown" not in multi_row
    host = "localhost:80"
    assert f'value="docker pull {host}/alice/multi:a-single"' in single_row
    assert f'title="{single.digest}"' in single_row and single.digest[:19] in single_row

    by_name = testapp.get("/r/alice/multi?sort=name", status=200).text
    assert by_name.index(">a-single<") < by_name.index(">b-multi<")
    db.execute(sa.update(tags).where(tags.c.name == "a-single").values(updated_at=components.clock.now()))
    db.commit()
    by_date = testapp.get("/r/alice/multi?sort=date", status=200).text
    assert by_date.index(">a-single<") < by_date.index(">b-multi<")
    db.execute(sa.update(tags).where(tags.c.name == "b-multi").values(updated_at=components.clock.now()))
    db.commit()
    by_date = testapp.get("/r/alice/multi?sort=date", status=200).text
    assert by_date.index(">b-multi<") < by_date.index(">a-single<")


def test_the_pull_line_uses_the_public_url_host(testapp, components, alice):
    push_image(testapp, alice, "alice/app", "v1")
    components.settings = dataclasses.replace(components.settings, public_url="https://registry.example.com")
    log_in(testapp, *ALICE)
    assert 'value="docker pull registry.example.com/alice/app:v1"' in testapp.get("/r/alice/app").text


def add_tags(db, repository: str, count: int, now, *, step=None, pushed_by=None, prefix="t"):
    """`count` tags on the repository's first manifest; with `step` the i-th is `i // 3` steps older (ties by 3)."""
    repo_id = db.execute(sa.select(repositories.c.id).where(repositories.c.name == repository)).scalar_one()
    manifest_id = db.execute(sa.select(manifests.c.id).where(manifests.c.repository_id == repo_id)).scalars().first()
    db.execute(
        sa.insert(tags),
        [
            {
                "repository_id": repo_id,
                "name": f"{prefix}{i:04d}",
                "manifest_id": manifest_id,
                "updated_at": now - (step * (i // 3) if step else timedelta(0)),
                "pushed_by": pushed_by,
            }
            for i in range(count)
        ],
    )
    db.commit()


def count_queries(components, call):
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(components.engine, "before_cursor_execute", before)
    try:
        call()
    finally:
        sa.event.remove(components.engine, "before_cursor_execute", before)
    return statements


def tag_names(page) -> list[str]:
    return [h.text for h in page.html.select("h3.tag-name")]


def link(page, rel: str) -> str | None:
    found = page.html.select_one(f'a[rel="{rel}"]')
    return found["href"] if found else None


def test_the_tags_page_runs_the_same_few_queries_for_300_tags_as_for_3(testapp, components, alice, db):
    push_image(testapp, alice, "alice/few", "latest")
    push_image(testapp, alice, "alice/many", "latest")
    add_tags(db, "alice/few", 2, components.clock.now(), step=timedelta(seconds=1), pushed_by="alice")
    add_tags(db, "alice/many", 300, components.clock.now(), step=timedelta(seconds=1), pushed_by="alice")
    log_in(testapp, *ALICE)
    testapp.get("/r/alice/few")  # the session's last-seen write happens once
    for sort in ("name", "date"):
        few = count_queries(components, lambda s=sort: testapp.get(f"/r/alice/few?sort={s}", status=200))
        many = count_queries(components, lambda s=sort: testapp.get(f"/r/alice/many?sort={s}", status=200))
        assert len(many) == len(few) and len(many) <= 15, many
        # a deep page (the last one) costs the same as the first
        page = testapp.get(f"/r/alice/many?sort={sort}", status=200)
        for _ in range(5):
            page = testapp.get(link(page, "next"), status=200)
        deep_path = page.request.path_qs
        deep = count_queries(components, lambda p=deep_path: testapp.get(p, status=200))
        assert len(deep) == len(many), deep
    page = testapp.get("/r/alice/many", status=200)
    assert len(tag_names(page)) == 50 and link(page, "next") and not link(page, "prev")
    for _ in range(5):
        page = testapp.get(link(page, "next"), status=200)
    assert len(tag_names(page)) == 50 and link(page, "next")  # 301 tags: one more page
    last = testapp.get(link(page, "next"), status=200)
    assert tag_names(last) == ["t0299"] and not link(last, "next") and link(last, "prev")


@pytest.mark.parametrize("sort", ["name", "date"])
def test_paging_goes_over_every_tag_once_forward_and_back_in_both_orders(testapp, components, alice, db, sort):
    push_image(testapp, alice, "alice/app", "latest")
    now = components.clock.now()
    # 119 more tags; three at a time share a timestamp, so ties straddle the page boundaries of the date order
    add_tags(db, "alice/app", 119, now - timedelta(hours=1), step=timedelta(seconds=1))
    expected_by_name = sorted(["latest", *(f"t{i:04d}" for i in range(119))])
    # newest first: `latest` (pushed now), then t0002, t0001, t0000 (the same second: by name, z to a), t0005, ...
    by_date = [f"t{i + 2 - 2 * (i % 3):04d}" for i in range(117)] + ["t0118", "t0117"]
    expected = expected_by_name if sort == "name" else ["latest", *by_date]
    log_in(testapp, *ALICE)
    pages = [testapp.get(f"/r/alice/app?sort={sort}", status=200)]
    while link(pages[-1], "next"):
        pages.append(testapp.get(link(pages[-1], "next"), status=200))
    assert [len(tag_names(p)) for p in pages] == [50, 50, 20]
    assert [n for p in pages for n in tag_names(p)] == expected
    assert all(f"sort={sort}" in (link(p, "next") or link(p, "prev")) for p in pages)
    back = [pages[-1]]
    while link(back[-1], "prev"):
        back.append(testapp.get(link(back[-1], "prev"), status=200))
    assert [tag_names(p) for p in reversed(back)] == [tag_names(p) for p in pages]
    assert "120 tags" in pages[0].text


def test_a_cursor_that_is_junk_or_past_the_end_is_answered_not_a_500(testapp, alice):
    push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *ALICE)
    for query in ("after=%3Cscript%3E", "before=..", "sort=date&after=x~v1", "sort=date&before=99999999999999999~v1"):
        page = testapp.get(f"/r/alice/app?{query}", status=200)
        assert tag_names(page) == ["v1"] and "<script>" not in page.text, query
    past = testapp.get("/r/alice/app?after=zzz", status=200)
    assert tag_names(past) == [] and "No more tags." in past.text and 'href="/r/alice/app?sort=name"' in past.text


def test_who_pushed_a_tag_is_shown_and_follows_the_tag_when_it_moves(testapp, components, alice, bob, db):
    first = push_image(testapp, alice, "team/app", "v1")
    push_image(testapp, alice, "team/app", "stable", seed="stable")
    give_right(components, "team", "bob", Right.PUSH)
    second = push_image(testapp, bob, "team/app", "v1", seed="second")  # bob moves v1 to another manifest
    put_manifest(testapp, bob, "team/app", first.digest, first.body, first.media_type)  # by digest: no tag set
    db.rollback()
    assert {r.name: r.pushed_by for r in db.execute(sa.select(tags.c.name, tags.c.pushed_by))} == {
        "v1": "bob",
        "stable": "alice",
    }
    db.execute(sa.update(tags).where(tags.c.name == "stable").values(pushed_by=None))  # pushed before 0010
    db.commit()
    log_in(testapp, *ALICE)
    page = testapp.get("/r/team/app", status=200)
    pushers = {h.text: h.find_parent("li").select_one("dd.pusher").text for h in page.html.select("h3.tag-name")}
    assert pushers == {"v1": "bob", "stable": "—"}
    manifest = testapp.get(f"/r/team/app/-/manifests/{second.digest}", status=200)
    assert [p.text for p in manifest.html.select(".tag-pushers .pusher")] == ["bob"]
    untagged = testapp.get(f"/r/team/app/-/manifests/{first.digest}", status=200)
    assert "Untagged" in untagged.text and not untagged.html.select(".tag-pushers")


def test_a_robot_name_with_a_plus_and_a_hostile_pusher_name_are_shown_escaped(testapp, alice, db):
    pushed = push_image(testapp, alice, "alice/app", "v1")
    push_image(testapp, alice, "alice/app", "v2", seed="two")
    hostile = '"><script>alert(1)</script>'
    db.execute(sa.update(tags).where(tags.c.name == "v1").values(pushed_by="alice+ci"))
    db.execute(sa.update(tags).where(tags.c.name == "v2").values(pushed_by=hostile))
    db.commit()
    log_in(testapp, *ALICE)
    for path in ("/r/alice/app", f"/r/alice/app/-/manifests/{pushed.digest}", "/"):
        text = testapp.get(path, status=200).text
        assert "<script>" not in text, path
    page = testapp.get("/r/alice/app", status=200)
    assert "alice+ci" in page.text and "&lt;script&gt;" in page.text


def test_the_manifest_page_shows_config_layers_and_referrers_escaped(testapp, alice):
    hostile = "<script>alert(1)</script>"
    config = {
        "architecture": "arm64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin", f"EVIL={hostile}"],
            "Entrypoint": ["/bin/server", "--port=8080"],
            "Cmd": ["serve"],
            "Labels": {"org.opencontainers.image.title": hostile, "maintainer": "ops@example.com"},
        },
        "history": [{"created_by": f"RUN echo {hostile}", "created": "2024-01-01T00:00:00Z"}],
    }
    body, config_bytes, layers = image_with_config(testapp, alice, "alice/app", "v1", config)
    image_digest = digest_of(body)
    subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest, "size": len(body)}
    signature = push_artifact(
        testapp,
        alice,
        "alice/app",
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        subject=subject,
        annotations={"note": hostile},
    )
    log_in(testapp, *ALICE)
    page = testapp.get(f"/r/alice/app/-/manifests/{image_digest}", status=200)
    text = page.text
    assert "<script>" not in text
    assert html.escape(hostile, quote=False) in text or "&lt;script&gt;" in text
    assert "PATH=/usr/bin" in text and "/bin/server" in text and "serve" in text and "ops@example.com" in text
    assert "linux/arm64" in text and "RUN echo" in text
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in text
    assert human_size(len(layers[1])) in text and human_size(len(config_bytes) + sum(map(len, layers))) in text
    assert "application/vnd.dev.cosign.artifact.sig.v1+json" in text
    assert f'href="/r/alice/app/-/manifests/{signature.digest}"' in text
    # the signature's own page links back to its subject
    sig_page = testapp.get(f"/r/alice/app/-/manifests/{signature.digest}", status=200).text
    assert f'href="/r/alice/app/-/manifests/{image_digest}"' in sig_page and "<script>" not in sig_page
    testapp.get("/r/alice/app/-/manifests/sha256:" + "0" * 64, status=404)
    testapp.get("/r/alice/app/-/manifests/not-a-digest", status=404)


def test_an_index_page_lists_its_platforms_with_links(testapp, alice):
    amd = push_image(testapp, alice, "alice/multi", None, seed="amd64")
    index = index_manifest([amd.descriptor(platform={"os": "linux", "architecture": "amd64"})])
    put_manifest(testapp, alice, "alice/multi", "latest", index, "application/vnd.oci.image.index.v1+json")
    log_in(testapp, *ALICE)
    page = testapp.get(f"/r/alice/multi/-/manifests/{digest_of(index)}", status=200).text
    assert "linux/amd64" in page and f'href="/r/alice/multi/-/manifests/{amd.digest}"' in page


def test_script_in_an_annotation_and_a_tag_list_is_escaped(testapp, alice):
    hostile = '"><script>alert(1)</script>'
    push_image(testapp, alice, "alice/app", "v1", annotations={"org.opencontainers.image.description": hostile})
    log_in(testapp, *ALICE)
    page = testapp.get("/r/alice/app", status=200)
    digest = page.html.select_one("a.digest")["title"]
    manifest_page = testapp.get(f"/r/alice/app/-/manifests/{digest}", status=200).text
    assert "<script>" not in manifest_page and "&lt;script&gt;" in manifest_page
    assert "<script>" not in testapp.get("/repositories?q=" + hostile, status=200).text


def test_a_tag_is_deleted_from_the_page_by_someone_with_the_right(testapp, alice, db):
    push_image(testapp, alice, "alice/app", "v1")
    push_image(testapp, alice, "alice/app", "v2", seed="two")
    log_in(testapp, *ALICE)
    page = testapp.get("/r/alice/app", status=200)
    form = next(f for f in page.forms.values() if f.action.endswith("/tags/v1/delete"))
    done = form.submit(status=303)
    assert done.headers["Location"].endswith("/r/alice/app")
    after = done.follow(status=200).text
    assert "The tag v1 was deleted." in after and ">v1<" not in after and ">v2<" in after
    db.rollback()
    assert sorted(db.execute(sa.select(tags.c.name)).scalars()) == ["v2"]


def test_deleting_a_tag_is_refused_without_the_right_or_the_csrf_token(testapp, alice, bob, db):
    push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *BOB)
    page = testapp.get("/r/alice/app", status=200)  # default model: bob may pull, not delete
    assert "/tags/v1/delete" not in page.text and "/-/delete" not in page.text
    token = csrf_token(page)
    testapp.post("/r/alice/app/-/tags/v1/delete", {"csrf_token": token}, status=403)
    testapp.get("/r/alice/app/-/delete", status=403)
    testapp.post("/r/alice/app/-/delete", {"csrf_token": token, "confirm_name": "alice/app"}, status=403)
    testapp.post("/logout", {"csrf_token": token}, status=303)
    log_in(testapp, *ALICE)
    testapp.post("/r/alice/app/-/tags/v1/delete", {}, status=400)
    testapp.post("/r/alice/app/-/tags/v1/delete", {"csrf_token": "stale"}, status=400)
    testapp.post("/r/alice/app/-/delete", {"confirm_name": "alice/app"}, status=400)
    assert count_rows(db, tags) == 1 and count_rows(db, repositories) == 1
    token = csrf_token(testapp.get("/r/alice/app"))
    testapp.post("/r/alice/app/-/tags/nope/delete", {"csrf_token": token}, status=404)


def test_a_repository_is_deleted_after_its_confirmation_page(testapp, alice, db):
    push_image(testapp, alice, "alice/app", "v1")
    push_image(testapp, alice, "alice/keep", "v1")
    log_in(testapp, *ALICE)
    confirm = testapp.get("/r/alice/app/-/delete", status=200)
    assert 'for="confirm_name"' in confirm.text
    form = confirm.forms[0] if "confirm_name" in confirm.forms[0].fields else confirm.forms[1]
    form["confirm_name"] = "alice/wrong"
    again = form.submit(status=400)
    assert "Type the repository" in again.text and count_rows(db, repositories) == 2
    form["confirm_name"] = "alice/app"
    done = form.submit(status=303)
    listing = done.follow(status=200).text
    assert "The repository alice/app was deleted." in listing and "alice/keep" in listing
    db.rollback()
    assert list(db.execute(sa.select(repositories.c.name)).scalars()) == ["alice/keep"]
    testapp.get("/r/alice/app", status=404)
    testapp.get("/v2/alice/app/manifests/v1", headers=alice, status=404)
    testapp.get("/v2/alice/keep/manifests/v1", headers=alice, status=200)
    # pushing again after the delete works
    push_image(testapp, alice, "alice/app", "v2")
    assert json.loads(testapp.get("/v2/alice/app/tags/list", headers=alice).text)["tags"] == ["v2"]


# --- deleting a manifest from its page -------------------------------------------------------------------------


def test_a_tagged_manifest_is_deleted_with_its_tags_after_its_confirmation_page(testapp, alice, db):
    doomed = push_image(testapp, alice, "alice/app", "v1")
    put_manifest(testapp, alice, "alice/app", "also", doomed.body, doomed.media_type)
    push_image(testapp, alice, "alice/app", "keep", seed="keep")
    log_in(testapp, *ALICE)
    page = testapp.get(f"/r/alice/app/-/manifests/{doomed.digest}", status=200)
    confirm = testapp.get(link_to_delete(page), status=200)
    assert doomed.digest in confirm.text and ">v1<" in confirm.text and ">also<" in confirm.text
    assert count_rows(db, manifests) == 2  # the confirmation page changes nothing
    done = delete_form(confirm).submit(status=303)
    assert done.headers["Location"].endswith("/r/alice/app")
    after = done.follow(status=200).text
    assert f"The manifest {doomed.digest[:19]} and its tags were deleted." in after
    db.rollback()
    assert list(db.execute(sa.select(tags.c.name)).scalars()) == ["keep"]
    assert doomed.digest not in list(db.execute(sa.select(manifests.c.digest)).scalars())
    testapp.get(f"/v2/alice/app/manifests/{doomed.digest}", headers=alice, status=404)
    testapp.get(f"/r/alice/app/-/manifests/{doomed.digest}", status=404)
    recorded = db.execute(sa.select(audit_events).where(audit_events.c.action == "delete_manifest")).one()
    assert recorded.target == f"alice/app@{doomed.digest}" and recorded.actor_name == "alice"


def delete_form(page):
    return next(f for f in page.forms.values() if f.action.endswith("/delete"))


def link_to_delete(page) -> str:
    found = [a["href"] for a in page.html.select("a") if a["href"].endswith("/delete")]
    assert len(found) == 1, found
    return found[0]


def test_an_untagged_manifest_is_deleted_from_its_page(testapp, alice, db):
    untagged = push_image(testapp, alice, "alice/app", None, seed="loose")
    push_image(testapp, alice, "alice/app", "v1")
    log_in(testapp, *ALICE)
    confirm = testapp.get(f"/r/alice/app/-/manifests/{untagged.digest}/delete", status=200)
    assert "It is untagged." in confirm.text
    delete_form(confirm).submit(status=303)
    db.rollback()
    assert untagged.digest not in list(db.execute(sa.select(manifests.c.digest)).scalars())
    assert list(db.execute(sa.select(tags.c.name)).scalars()) == ["v1"]


def test_deleting_a_manifest_is_refused_without_the_right_the_token_or_the_manifest(
    testapp, components, alice, bob, db
):
    pushed = push_image(testapp, alice, "alice/app", "v1")
    path = f"/r/alice/app/-/manifests/{pushed.digest}/delete"
    log_in(testapp, *BOB)  # default model: bob may pull alice/app, not delete in it
    page = testapp.get(f"/r/alice/app/-/manifests/{pushed.digest}", status=200)
    assert "/delete" not in page.text
    token = csrf_token(page)
    testapp.get(path, status=403)
    testapp.post(path, {"csrf_token": token}, status=403)
    testapp.post("/logout", {"csrf_token": token}, status=303)
    log_in(testapp, *ALICE)
    testapp.post(path, {}, status=400)
    testapp.post(path, {"csrf_token": "stale"}, status=400)
    assert count_rows(db, manifests) == 1 and count_rows(db, tags) == 1
    token = csrf_token(testapp.get(path))
    testapp.post(f"/r/alice/app/-/manifests/sha256:{'0' * 64}/delete", {"csrf_token": token}, status=404)
    testapp.post("/r/alice/app/-/manifests/not-a-digest/delete", {"csrf_token": token}, status=404)
    testapp.get(f"/r/alice/nothing/-/manifests/{pushed.digest}/delete", status=404)
    assert count_rows(db, manifests) == 1 and count_rows(db, tags) == 1
    db.rollback()
    assert db.execute(sa.select(audit_events).where(audit_events.c.action == "delete_manifest")).all() == []


def test_under_private_a_manifest_the_caller_may_not_pull_is_not_found_for_deletion(testapp, components, alice, bob):
    pushed = push_image(testapp, bob, "bob/hidden", "v1")
    private(components)
    log_in(testapp, *ALICE)
    path = f"/r/bob/hidden/-/manifests/{pushed.digest}/delete"
    hidden = testapp.get(path, status=404)
    assert hidden.text == testapp.get("/r/bob/nothing", status=404).text
    token = csrf_token(testapp.get("/repositories"))
    testapp.post(path, {"csrf_token": token}, status=404)

"""The repository pages: the list (rights, search, paging), a repository's tags (sort, sizes, platforms, a bounded
number of queries), a manifest (config, referrers), escaping, the 404 that is no oracle, and deletion's refusals."""

from __future__ import annotations

import dataclasses
import html
import json

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables import accounts, manifests, repositories, tags
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


def add_tags(db, repository: str, count: int, now):
    repo_id = db.execute(sa.select(repositories.c.id).where(repositories.c.name == repository)).scalar_one()
    manifest_id = db.execute(sa.select(manifests.c.id).where(manifests.c.repository_id == repo_id)).scalars().first()
    db.execute(
        sa.insert(tags),
        [
            {"repository_id": repo_id, "name": f"t{i:04d}", "manifest_id": manifest_id, "updated_at": now}
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


def test_the_tags_page_runs_the_same_few_queries_for_300_tags_as_for_3(testapp, components, alice, db):
    push_image(testapp, alice, "alice/few", "latest")
    push_image(testapp, alice, "alice/many", "latest")
    add_tags(db, "alice/few", 2, components.clock.now())
    add_tags(db, "alice/many", 300, components.clock.now())
    log_in(testapp, *ALICE)
    testapp.get("/r/alice/few")  # the session's last-seen write happens once
    few = count_queries(components, lambda: testapp.get("/r/alice/few", status=200))
    many = count_queries(components, lambda: testapp.get("/r/alice/many", status=200))
    assert len(many) == len(few) and len(many) <= 15, many
    page = testapp.get("/r/alice/many", status=200).text
    assert page.count('class="tag"') == 50 and 'rel="next"' in page
    last = testapp.get("/r/alice/many?page=7", status=200).text
    assert last.count('class="tag"') == 1 and 'rel="next"' not in last


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

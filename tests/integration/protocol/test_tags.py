"""Listing tags, sorted and paged (distribution-spec "Listing Tags")."""

from tests.integration.protocol.helpers import OCI_MANIFEST, error_codes, parse_link, push_image, put_manifest

TAGS = ["b", "a2", "A", "a10", "Z-last", "a", "1.0", "_under"]


def tag_everything(testapp, auth, repo, tags=TAGS):
    image = push_image(testapp, auth, repo, tags[0])
    for tag in tags[1:]:
        put_manifest(testapp, auth, repo, tag, image.body, OCI_MANIFEST)
    return image


def test_tags_are_sorted_in_byte_order(testapp, auth):
    tag_everything(testapp, auth, "tags/sorted")
    response = testapp.get("/v2/tags/sorted/tags/list", headers=auth, status=200)
    assert response.json == {"name": "tags/sorted", "tags": sorted(TAGS)}
    assert response.json["tags"] == ["1.0", "A", "Z-last", "_under", "a", "a10", "a2", "b"]
    assert "Link" not in response.headers


def test_paging_with_n_and_link_walks_every_tag_once(testapp, auth):
    tag_everything(testapp, auth, "tags/paged")
    seen, url, pages = [], "/v2/tags/paged/tags/list?n=3", 0
    while url:
        response = testapp.get(url, headers=auth, status=200)
        pages += 1
        page = response.json["tags"]
        assert len(page) <= 3
        seen += page
        if "Link" not in response.headers:
            break
        assert len(page) == 3
        path, query = parse_link(response.headers["Link"])
        assert path == "/v2/tags/paged/tags/list"
        assert query["n"] == ["3"]
        assert query["last"] == [page[-1]]
        url = response.headers["Link"].split(">")[0][1:]
    assert seen == sorted(TAGS)
    assert pages == 3


def test_last_page_that_is_exactly_full_has_no_link(testapp, auth):
    tag_everything(testapp, auth, "tags/exact", ["t1", "t2", "t3", "t4"])
    first = testapp.get("/v2/tags/exact/tags/list?n=2", headers=auth, status=200)
    assert first.json["tags"] == ["t1", "t2"]
    assert "Link" in first.headers
    second = testapp.get("/v2/tags/exact/tags/list?n=2&last=t2", headers=auth, status=200)
    assert second.json["tags"] == ["t3", "t4"]
    assert "Link" not in second.headers


def test_last_alone_returns_tags_after_it(testapp, auth):
    tag_everything(testapp, auth, "tags/last")
    response = testapp.get("/v2/tags/last/tags/list?last=a", headers=auth, status=200)
    assert response.json["tags"] == ["a10", "a2", "b"]


def test_last_need_not_be_an_existing_tag(testapp, auth):
    tag_everything(testapp, auth, "tags/last-missing")
    response = testapp.get("/v2/tags/last-missing/tags/list?n=2&last=a1", headers=auth, status=200)
    assert response.json["tags"] == ["a10", "a2"]


def test_n_larger_than_the_list_returns_everything_without_link(testapp, auth):
    tag_everything(testapp, auth, "tags/big-n")
    response = testapp.get("/v2/tags/big-n/tags/list?n=100", headers=auth, status=200)
    assert response.json["tags"] == sorted(TAGS)
    assert "Link" not in response.headers


def test_n_zero_is_an_empty_list_without_link(testapp, auth):
    tag_everything(testapp, auth, "tags/n-zero")
    response = testapp.get("/v2/tags/n-zero/tags/list?n=0", headers=auth, status=200)
    assert response.json["tags"] == []
    assert "Link" not in response.headers


def test_unknown_repository_is_name_unknown(testapp, auth):
    response = testapp.get("/v2/tags/never-pushed/tags/list", headers=auth, status=404)
    assert error_codes(response) == ["NAME_UNKNOWN"]


def test_invalid_n_is_refused(testapp, auth):
    tag_everything(testapp, auth, "tags/bad-n")
    for n in ("-1", "many"):
        response = testapp.get(f"/v2/tags/bad-n/tags/list?n={n}", headers=auth, status=400)
        assert response.json["errors"][0]["code"]


def test_tags_are_case_sensitive(testapp, auth):
    lower = push_image(testapp, auth, "tags/case", "v1", seed="lower")
    upper = push_image(testapp, auth, "tags/case", "V1", seed="upper")
    assert testapp.get("/v2/tags/case/tags/list", headers=auth).json["tags"] == ["V1", "v1"]
    for tag, image in (("v1", lower), ("V1", upper)):
        response = testapp.get(f"/v2/tags/case/manifests/{tag}", headers=auth, status=200)
        assert response.headers["Docker-Content-Digest"] == image.digest
    testapp.delete("/v2/tags/case/manifests/V1", headers=auth, status=202)
    assert testapp.get("/v2/tags/case/manifests/v1", headers=auth).body == lower.body

"""GET /v2/_catalog: every repository, sorted and paged."""

from tests.integration.protocol.helpers import parse_link, push_image

# Punctuation picked so that byte order differs from a locale collation ("a-c" < "a.b" < "a/b" < "a_b" < "ab").
REPOSITORIES = ["catalog/b", "a/b/c", "catalog/a", "zeta", "a/b", "alpha", "ab", "a-c", "a_b", "a.b"]


def push_all(testapp, auth):
    for repo in REPOSITORIES:
        push_image(testapp, auth, repo, "v1", layer_count=1)


def test_catalog_lists_every_pushed_repository(testapp, auth):
    push_all(testapp, auth)
    response = testapp.get("/v2/_catalog", headers=auth, status=200)
    assert response.json["repositories"] == sorted(REPOSITORIES)
    assert "Link" not in response.headers


def test_catalog_of_an_empty_registry(testapp, auth):
    response = testapp.get("/v2/_catalog", headers=auth, status=200)
    assert response.json["repositories"] == []


def test_catalog_paging_with_n_last_and_link(testapp, auth):
    push_all(testapp, auth)
    seen, url = [], "/v2/_catalog?n=4"
    while True:
        response = testapp.get(url, headers=auth, status=200)
        page = response.json["repositories"]
        seen += page
        if "Link" not in response.headers:
            break
        path, query = parse_link(response.headers["Link"])
        assert path == "/v2/_catalog"
        assert query["n"] == ["4"]
        assert query["last"] == [page[-1]]
        url = response.headers["Link"].split(">")[0][1:]
    assert seen == sorted(REPOSITORIES)


def test_catalog_last_skips_past_it(testapp, auth):
    push_all(testapp, auth)
    response = testapp.get("/v2/_catalog?n=2&last=a/b/c", headers=auth, status=200)
    assert response.json["repositories"] == ["a_b", "ab"]
    response = testapp.get("/v2/_catalog?n=2&last=a.b", headers=auth, status=200)
    assert response.json["repositories"] == ["a/b", "a/b/c"]
    assert "Link" in response.headers

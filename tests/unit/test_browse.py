"""The repository pages' pure helpers: sizes, platforms and configs read out of stored manifests, hostile or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stevedore.domain.browse import (
    ManifestRow,
    TagCursor,
    TagRow,
    TagSort,
    child_digests,
    human_size,
    image_size,
    load_document,
    page_number,
    parse_config,
    platforms,
    short_digest,
    tag_page,
    tag_views,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def image(config_size: int, *layer_sizes: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": config_size},
            "layers": [{"mediaType": "x/y", "digest": D2, "size": s} for s in layer_sizes],
        }
    ).encode()


def index(*entries: dict) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}).encode()


def test_an_images_size_is_its_config_and_layers():
    assert image_size(load_document(image(100, 1000, 2000))) == 3100


def test_sizes_that_are_no_sizes_count_as_nothing():
    document = {"config": {"size": "12"}, "layers": [{"size": -5}, {"size": True}, "junk", {"size": 7}]}
    assert image_size(document) == 7
    assert image_size(load_document(b"not json")) == 0
    assert load_document(b"[1, 2]") == {}


def test_platforms_of_an_index_skip_attestations_and_repeats():
    document = load_document(
        index(
            {"digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": D3, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": D3, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": D3, "size": 1, "platform": "linux/amd64"},
            {"digest": D3, "size": 1},
        )
    )
    assert platforms(document) == ["linux/amd64", "linux/arm64/v8"]


def test_an_index_tag_sums_the_images_the_repository_holds():
    rows = [
        TagRow(
            "multi",
            NOW,
            D3,
            OCI_INDEX,
            10,
            NOW,
            index(
                {"digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            ),
        ),
        TagRow("single", NOW, D1, OCI_MANIFEST, 10, NOW, image(10, 90)),
    ]
    assert child_digests(rows) == {D1, D2}
    children = {D1: ManifestRow(D1, OCI_MANIFEST, 10, NOW, image(10, 90))}
    multi, single = tag_views(rows, children)
    assert (multi.size, multi.platforms, multi.is_index) == (100, ["linux/amd64", "linux/arm64"], True)
    assert (single.size, single.platforms, single.is_index) == (100, [], False)
    assert tag_views(rows[:1], {})[0].size is None


def test_a_config_gives_env_entrypoint_labels_and_history_and_ignores_junk():
    config = parse_config(
        json.dumps(
            {
                "os": "linux",
                "architecture": "arm",
                "variant": "v7",
                "config": {
                    "Env": ["A=1", 5],
                    "Entrypoint": "/bin/sh",
                    "Cmd": None,
                    "Labels": {"b": "2", "a": "1", "n": 3},
                    "ExposedPorts": {"80/tcp": {}},
                },
                "history": [{"created_by": "RUN x", "empty_layer": True}, "junk"],
            }
        ).encode()
    )
    assert config is not None
    assert config.platform == "linux/arm/v7"
    assert config.env == ["A=1"] and config.entrypoint == ["/bin/sh"] and config.cmd is None
    assert list(config.labels.items()) == [("a", "1"), ("b", "2")]
    assert config.exposed_ports == ["80/tcp"]
    assert [(h.created_by, h.empty_layer) for h in config.history] == [("RUN x", True)]
    assert parse_config(b"\xff") is None and parse_config(b'"text"') is None


def test_small_formatting_helpers():
    assert human_size(None) == "—" and human_size(512) == "512 B" and human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024**3) == "5.0 GiB"
    assert short_digest(D1) == "sha256:111111111111"
    assert page_number(None) == 1 and page_number("3") == 3 and page_number("-2") == 1 and page_number("x") == 1
    assert page_number("99999999999") == 100_000


# --- keyset pages of tags ---------------------------------------------------------------------------------------


def test_a_tag_cursor_goes_through_text_and_back_and_junk_is_no_cursor():
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    by_date = TagCursor(TagSort.DATE, "v1.2_rc-3", moment)
    assert by_date.text() == f"{int(moment.timestamp()) * 1_000_000 + 123456}~v1.2_rc-3"
    assert TagCursor.parse(TagSort.DATE, by_date.text()) == by_date
    assert TagCursor.parse(TagSort.NAME, "v1.2") == TagCursor(TagSort.NAME, "v1.2")
    assert TagCursor(TagSort.NAME, "v1", moment).text() == "v1"
    for junk in (None, "", "<script>", "-v1", "a" * 129, "v1~x"):
        assert TagCursor.parse(TagSort.NAME, junk) is None, junk
    for junk in ("v1", "~v1", "12x~v1", "١٢~v1", "1" * 18 + "~v1", "12~", "12~<b>"):
        assert TagCursor.parse(TagSort.DATE, junk) is None, junk
    assert TagSort.parse("date") is TagSort.DATE and TagSort.parse("x") is TagSort.NAME
    assert TagSort.parse(None) is TagSort.NAME


def row(name: str, minute: int, pushed_by: str | None = None) -> TagRow:
    return TagRow(name, NOW + timedelta(minutes=minute), D1, OCI_MANIFEST, 10, NOW, image(1, 2), pushed_by)


def fake_fetch(rows: list[TagRow], sort: TagSort):
    """The query port's contract in Python: by name, or newest first with ties by name from z to a; strictly after
    (or before) the cursor; at most `limit`, still in the sort order."""

    def key(r: TagRow):
        return r.name if sort is TagSort.NAME else (r.updated_at, r.name)

    def first(a, b) -> bool:  # does a come before b?
        return key(a) < key(b) if sort is TagSort.NAME else key(a) > key(b)

    ordered = sorted(rows, key=key, reverse=sort is TagSort.DATE)
    calls: list[tuple] = []

    def fetch(*, after, before, limit):
        calls.append((after, before, limit))
        if before is not None:
            return [r for r in ordered if first(r, row_at(before))][-limit:]
        return [r for r in ordered if after is None or first(row_at(after), r)][:limit]

    def row_at(cursor):
        return TagRow(cursor.name, cursor.updated_at or NOW, D1, OCI_MANIFEST, 0, NOW, b"")

    return fetch, ordered, calls


@pytest.mark.parametrize("sort", [TagSort.NAME, TagSort.DATE])
def test_tag_pages_walk_forward_and_back_over_every_tag_once(sort):
    # Ties in time across a page boundary: the date order breaks them by name.
    rows = [row(f"t{i:02d}", minute=i // 4) for i in range(23)]
    fetch, ordered, calls = fake_fetch(rows, sort)
    if sort is TagSort.DATE:
        assert [r.name for r in ordered[:5]] == ["t22", "t21", "t20", "t19", "t18"]
    pages = [tag_page(fetch, sort, after=None, before=None, per_page=5)]
    assert pages[0].previous is None
    while pages[-1].next is not None:
        pages.append(tag_page(fetch, sort, after=pages[-1].next, before=None, per_page=5))
    assert [len(p.rows) for p in pages] == [5, 5, 5, 5, 3]
    assert [r.name for p in pages for r in p.rows] == [r.name for r in ordered]
    assert all(call[2] == 6 for call in calls)  # one fetch a page, one row more than shown
    back = [pages[-1]]
    while back[-1].previous is not None:
        back.append(tag_page(fetch, sort, after=None, before=back[-1].previous, per_page=5))
    assert [[r.name for r in p.rows] for p in reversed(back)] == [[r.name for r in p.rows] for p in pages]
    assert back[-1].previous is None and back[-1].next is not None


def test_a_page_before_a_cursor_with_nothing_before_it_is_the_first_page():
    rows = [row(f"t{i}", i) for i in range(3)]
    fetch, _ordered, _calls = fake_fetch(rows, TagSort.NAME)
    first = tag_page(fetch, TagSort.NAME, after=None, before=TagCursor(TagSort.NAME, "a"), per_page=2)
    assert [r.name for r in first.rows] == ["t0", "t1"] and first.previous is None and first.next is not None
    beyond = tag_page(fetch, TagSort.NAME, after=TagCursor(TagSort.NAME, "z"), before=None, per_page=2)
    assert beyond.rows == [] and beyond.next is None and beyond.previous is None


def test_a_tag_view_carries_who_pushed_it():
    views = tag_views([row("a", 0, "robot+ci"), row("b", 0)], {})
    assert [v.pushed_by for v in views] == ["robot+ci", None]

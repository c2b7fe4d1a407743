"""The fsck rule (domain/fsck.py) with hand-made views: each kind of finding, and a consistent registry."""

from __future__ import annotations

from stevedore.domain.fsck import (
    BlobRow,
    DatabaseView,
    FindingKind,
    ManifestRow,
    StorageView,
    StoredObject,
    StoredUpload,
    TagRow,
    check,
    default_location,
    digest_of_location,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
M = "sha256:" + "d" * 64
N = "sha256:" + "e" * 64


def consistent_views() -> tuple[DatabaseView, StorageView]:
    database = DatabaseView(
        blobs=[BlobRow(A, 10), BlobRow(B, 20, "objects/u1")],
        links=[("lib/app", A), ("lib/app", B)],
        manifests=[ManifestRow(1, "lib/app", M, M, frozenset({A, B}))],
        tags=[TagRow("lib/app", "latest", 1)],
        upload_ids={"open"},
    )
    storage = StorageView(
        objects=[StoredObject(default_location(A), 10), StoredObject("objects/u1", 20)],
        uploads=[StoredUpload("open", 3)],
    )
    return database, storage


def kinds(report) -> list[FindingKind]:
    return [finding.kind for finding in report.findings]


def test_a_consistent_registry_has_no_findings():
    database, storage = consistent_views()
    report = check(database, storage)
    assert report.consistent
    assert report.summary()[-1] == "consistent"
    assert report.blobs_checked == 2 and report.objects_seen == 2


def test_locations_by_digest_round_trip():
    assert default_location(A) == f"blobs/sha256/aa/{'a' * 64}"
    assert digest_of_location(default_location(A)) == A
    assert digest_of_location("objects/u1") is None
    assert digest_of_location("blobs/sha256/xx/" + "a" * 64) is None


def test_a_row_without_bytes_is_a_missing_object():
    database, storage = consistent_views()
    storage.objects.pop(0)
    report = check(database, storage)
    assert kinds(report) == [FindingKind.MISSING_OBJECT]
    assert report.findings[0].subject == A


def test_bytes_of_another_size_are_a_size_mismatch():
    database, storage = consistent_views()
    storage.objects[1] = StoredObject("objects/u1", 19)
    report = check(database, storage)
    assert kinds(report) == [FindingKind.SIZE_MISMATCH]
    assert "19 bytes stored, 20 recorded" in report.findings[0].detail


def test_bytes_without_a_row_are_unreferenced_and_named_for_their_digest():
    database, storage = consistent_views()
    storage.objects.append(StoredObject(default_location(C), 5))
    storage.objects.append(StoredObject("objects/crashed", 7))
    report = check(database, storage)
    assert kinds(report) == [FindingKind.UNREFERENCED_OBJECT] * 2
    assert [f.subject for f in report.findings] == [default_location(C), "objects/crashed"]
    assert C in report.findings[0].detail


def test_the_folder_store_ignores_recorded_keys():
    database, storage = consistent_views()
    folder = StorageView(
        [StoredObject(default_location(A), 10), StoredObject(default_location(B), 20)], [], honours_storage_keys=False
    )
    database.upload_ids.clear()
    assert check(database, folder).consistent
    report = check(database, StorageView(storage.objects, [], honours_storage_keys=False))
    assert kinds(report) == [FindingKind.MISSING_OBJECT, FindingKind.UNREFERENCED_OBJECT]


def test_dangling_links_of_every_sort():
    database, storage = consistent_views()
    database.links.append(("lib/other", C))  # a link to no blob row
    database.tags.append(TagRow("lib/app", "gone", 99))  # a tag of no manifest
    database.manifests.append(ManifestRow(2, "lib/idx", N, N, frozenset({A}), frozenset({M})))  # neither held
    report = check(database, storage)
    assert kinds(report) == [FindingKind.DANGLING_LINK] * 4
    subjects = [f.subject for f in report.findings]
    assert f"lib/other@{C}" in subjects and "lib/app:gone" in subjects
    details = " ".join(f.detail for f in report.findings)
    assert f"references blob {A}, not linked" in details
    assert f"references manifest {M}, not in the repository" in details


def test_manifest_bytes_of_another_digest():
    database, storage = consistent_views()
    database.manifests[0] = ManifestRow(1, "lib/app", M, N, frozenset({A, B}))
    assert kinds(check(database, storage)) == [FindingKind.MANIFEST_DIGEST_MISMATCH]


def test_upload_bytes_without_an_upload_row_are_stale():
    database, storage = consistent_views()
    storage.uploads.append(StoredUpload("crashed", 100))
    report = check(database, storage)
    assert kinds(report) == [FindingKind.STALE_UPLOAD]
    assert report.findings[0].subject == "crashed"


def test_rehash_finds_bytes_of_another_digest_and_is_asked_only_for_the_right_size():
    database, storage = consistent_views()
    storage.objects[1] = StoredObject("objects/u1", 19)
    asked = []

    def rehash(row, location):
        asked.append((row.digest, location))
        return C

    report = check(database, storage, rehash=rehash)
    assert asked == [(A, default_location(A))]
    assert kinds(report) == [FindingKind.DIGEST_MISMATCH, FindingKind.SIZE_MISMATCH]  # by digest


def test_the_summary_counts_every_kind_and_lists_the_first_items():
    database, storage = consistent_views()
    storage.objects.extend(StoredObject(f"objects/stray{i}", i) for i in range(5))
    lines = check(database, storage).summary(first=2)
    assert "unreferenced objects (bytes without a row): 5" in lines
    assert "missing objects (a row without bytes): 0" in lines
    assert "  objects/stray0: 0 bytes" in lines
    assert "  … and 3 more" in lines
    assert lines[-1] == "INCONSISTENT: 5 findings"

"""Use case: compare the database with the blob storage (`stevedore fsck`). Pure: both views are handed in.

The database's view: blob rows (digest, size, where the store put the bytes when it chose the place), each
repository's blob links, its manifests and what they reference, its tags. The storage's view: the objects it holds
(where, how many bytes, the digest when the place names it) and the upload leftovers it holds.

Findings, by kind:

- `missing_object`: a blob row whose bytes are not in the storage (a pull of it fails);
- `size_mismatch`: the bytes are there with another size than the row's;
- `digest_mismatch`: the bytes hash to another digest (only when digests are verified: slow, every byte is read);
- `unreferenced_object`: bytes no blob row points at (invisible to clients; reported, never deleted: garbage
  collection will build on this list);
- `dangling_link`: a repository link to a missing blob row, a tag to a missing manifest, a manifest that references
  a blob not linked into its repository or a child manifest its repository does not hold;
- `manifest_digest_mismatch`: a manifest whose stored bytes hash to another digest than its row's;
- `stale_upload`: upload bytes in the storage with no open upload in the database (a crashed or aborted push),
  S3's incomplete multipart uploads with no open upload included (`stevedore upload sweep` aborts those older than
  its limit; the bucket's AbortIncompleteMultipartUpload lifecycle rule is the backstop).

Every kind is an inconsistency: `Report.consistent` is True only without findings. On a live registry a push in
progress may show for a moment as an unreferenced object or a stale upload (its bytes are written before its row
commits, or after the database was read); run it again, or when nothing is pushed, before acting on those two kinds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class FindingKind(StrEnum):
    MISSING_OBJECT = "missing_object"
    SIZE_MISMATCH = "size_mismatch"
    DIGEST_MISMATCH = "digest_mismatch"
    UNREFERENCED_OBJECT = "unreferenced_object"
    DANGLING_LINK = "dangling_link"
    MANIFEST_DIGEST_MISMATCH = "manifest_digest_mismatch"
    STALE_UPLOAD = "stale_upload"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    FindingKind.MISSING_OBJECT: "missing objects (a row without bytes)",
    FindingKind.SIZE_MISMATCH: "size mismatches",
    FindingKind.DIGEST_MISMATCH: "digest mismatches",
    FindingKind.UNREFERENCED_OBJECT: "unreferenced objects (bytes without a row)",
    FindingKind.DANGLING_LINK: "dangling links",
    FindingKind.MANIFEST_DIGEST_MISMATCH: "manifests whose bytes have another digest",
    FindingKind.STALE_UPLOAD: "stale upload leftovers",
}


def default_location(digest: str) -> str:
    """Where a blob lives when no place was recorded: `blobs/<algorithm>/<2 hex>/<hex>` (both stores' layout)."""
    algorithm, _, hex_ = digest.partition(":")
    return f"blobs/{algorithm}/{hex_[:2]}/{hex_}"


def digest_of_location(location: str) -> str | None:
    """The digest a default-layout location names, else None."""
    parts = location.split("/")
    if len(parts) == 4 and parts[0] == "blobs" and parts[1] and len(parts[3]) > 2 and parts[2] == parts[3][:2]:
        return f"{parts[1]}:{parts[3]}"
    return None


# --- the database's view ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlobRow:
    digest: str
    size: int
    storage_key: str | None = None


@dataclass(frozen=True)
class ManifestRow:
    id: int
    repository: str
    digest: str
    content_digest: str | None = None  # the digest of the stored bytes, in the manifest's algorithm
    blobs: frozenset[str] = frozenset()
    children: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TagRow:
    repository: str
    name: str
    manifest_id: int


@dataclass(frozen=True)
class DatabaseView:
    blobs: list[BlobRow]
    links: list[tuple[str, str]]  # (repository, blob digest)
    manifests: list[ManifestRow]
    tags: list[TagRow]
    upload_ids: set[str]


# --- the storage's view -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredObject:
    location: str  # relative to the store's root or prefix: blobs/<alg>/<xx>/<hex>, objects/<upload id>
    size: int


@dataclass(frozen=True)
class StoredUpload:
    upload_id: str
    size: int


@dataclass(frozen=True)
class StoredMultipartUpload:
    """An incomplete S3 multipart upload: the upload session it belongs to (the key's `objects/<id>`, else the
    location itself), where it would complete, S3's id for it and when it started."""

    upload_id: str
    location: str
    s3_upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class StorageView:
    objects: list[StoredObject]
    uploads: list[StoredUpload]
    # False for the folder store: it derives every blob's place from its digest and ignores a recorded key.
    honours_storage_keys: bool = True
    multipart_uploads: list[StoredMultipartUpload] = field(default_factory=list)


# --- the report -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    subject: str  # a digest, a location, `repository:tag`, an upload id
    detail: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    blobs_checked: int = 0
    objects_seen: int = 0
    manifests_checked: int = 0
    tags_checked: int = 0

    @property
    def consistent(self) -> bool:
        return not self.findings

    def of_kind(self, kind: FindingKind) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind == kind]

    def counts(self) -> dict[FindingKind, int]:
        counted = dict.fromkeys(FindingKind, 0)
        for finding in self.findings:
            counted[finding.kind] += 1
        return counted

    def summary(self, first: int = 10) -> list[str]:
        """Lines for a terminal: what was checked, the count of each kind, and the first `first` items of each."""
        lines = [
            f"checked {self.blobs_checked} blobs, {self.objects_seen} stored objects, "
            f"{self.manifests_checked} manifests, {self.tags_checked} tags"
        ]
        for kind, count in self.counts().items():
            lines.append(f"{kind.label}: {count}")
            for finding in self.of_kind(kind)[:first]:
                lines.append(f"  {finding.subject}: {finding.detail}")
            if count > first:
                lines.append(f"  … and {count - first} more")
        lines.append("consistent" if self.consistent else f"INCONSISTENT: {len(self.findings)} findings")
        return lines


def expected_location(row: BlobRow, honours_storage_keys: bool) -> str:
    if row.storage_key and honours_storage_keys:
        return row.storage_key
    return default_location(row.digest)


def check(
    database: DatabaseView,
    storage: StorageView,
    *,
    rehash: Callable[[BlobRow, str], str | None] | None = None,
) -> Report:
    """Compare the two views. `rehash(row, location)`, when given, returns the digest the stored bytes hash to (or
    None when they vanished meanwhile): it is asked only for blobs whose bytes are present with the right size."""
    report = Report(
        blobs_checked=len(database.blobs),
        objects_seen=len(storage.objects),
        manifests_checked=len(database.manifests),
        tags_checked=len(database.tags),
    )
    add = report.findings.append
    stored = {item.location: item for item in storage.objects}
    claimed: set[str] = set()
    rows = {row.digest: row for row in database.blobs}

    for row in sorted(database.blobs, key=lambda row: row.digest):
        location = expected_location(row, storage.honours_storage_keys)
        claimed.add(location)
        found = stored.get(location)
        if found is None:
            add(Finding(FindingKind.MISSING_OBJECT, row.digest, f"no bytes at {location}"))
            continue
        if found.size != row.size:
            add(Finding(FindingKind.SIZE_MISMATCH, row.digest, f"{found.size} bytes stored, {row.size} recorded"))
            continue
        if rehash is not None:
            actual = rehash(row, location)
            if actual is None:
                add(Finding(FindingKind.MISSING_OBJECT, row.digest, f"the bytes at {location} vanished while read"))
            elif actual != row.digest:
                add(Finding(FindingKind.DIGEST_MISMATCH, row.digest, f"the bytes at {location} hash to {actual}"))

    for item in sorted(storage.objects, key=lambda item: item.location):
        if item.location not in claimed:
            named = digest_of_location(item.location)
            what = f"{item.size} bytes" + (f", named for {named}" if named else "")
            add(Finding(FindingKind.UNREFERENCED_OBJECT, item.location, what))

    linked: dict[str, set[str]] = defaultdict(set)
    for repository, digest in sorted(database.links):
        linked[repository].add(digest)
        if digest not in rows:
            add(Finding(FindingKind.DANGLING_LINK, f"{repository}@{digest}", "repository link to a missing blob row"))

    held: dict[str, set[str]] = defaultdict(set)
    for manifest in database.manifests:
        held[manifest.repository].add(manifest.digest)
    for manifest in sorted(database.manifests, key=lambda m: (m.repository, m.digest)):
        subject = f"{manifest.repository}@{manifest.digest}"
        if manifest.content_digest is not None and manifest.content_digest != manifest.digest:
            add(Finding(FindingKind.MANIFEST_DIGEST_MISMATCH, subject, f"its bytes hash to {manifest.content_digest}"))
        for digest in sorted(manifest.blobs - linked[manifest.repository]):
            missing = "" if digest in rows else " (and no blob row)"
            add(Finding(FindingKind.DANGLING_LINK, subject, f"references blob {digest}, not linked{missing}"))
        for digest in sorted(manifest.children - held[manifest.repository]):
            add(Finding(FindingKind.DANGLING_LINK, subject, f"references manifest {digest}, not in the repository"))

    manifest_ids = {manifest.id for manifest in database.manifests}
    for tag in sorted(database.tags, key=lambda tag: (tag.repository, tag.name)):
        if tag.manifest_id not in manifest_ids:
            add(
                Finding(
                    FindingKind.DANGLING_LINK,
                    f"{tag.repository}:{tag.name}",
                    f"tag of missing manifest {tag.manifest_id}",
                )
            )

    for upload in sorted(storage.uploads, key=lambda upload: upload.upload_id):
        if upload.upload_id not in database.upload_ids:
            add(Finding(FindingKind.STALE_UPLOAD, upload.upload_id, f"{upload.size} bytes, no open upload row"))
    for multipart in orphan_multipart_uploads(storage, database.upload_ids):
        started = f"{multipart.initiated:%Y-%m-%d %H:%M:%S}"
        detail = f"incomplete multipart upload at {multipart.location} started {started}, no open upload row"
        add(Finding(FindingKind.STALE_UPLOAD, multipart.upload_id, detail))
    return report


def unreferenced(report: Report) -> Iterable[str]:
    """The locations of unreferenced objects: what a garbage collector would consider."""
    return [finding.subject for finding in report.of_kind(FindingKind.UNREFERENCED_OBJECT)]


def orphan_multipart_uploads(
    storage: StorageView, upload_ids: set[str], started_before: datetime | None = None
) -> list[StoredMultipartUpload]:
    """The incomplete multipart uploads no open upload session knows, oldest first; with `started_before`, only
    those started earlier (a young one may be a push in progress: a whole blob in one POST has no session row, and a
    session's multipart upload, started at its first whole part after its row committed, is unknown to rows read
    before that commit)."""
    found = [
        multipart
        for multipart in storage.multipart_uploads
        if multipart.upload_id not in upload_ids and (started_before is None or multipart.initiated < started_before)
    ]
    return sorted(found, key=lambda multipart: (multipart.initiated, multipart.location, multipart.s3_upload_id))

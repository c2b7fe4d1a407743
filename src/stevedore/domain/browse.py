"""Domain layer: what the repository pages read — the read model's rows, the query port that pages them, and pure
helpers that read sizes, platforms and image configs out of stored manifests (never trusting them: anything a
pusher wrote may be missing, of the wrong type or hostile)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from stevedore.domain.namespaces import Right

# Configs larger than this are not parsed for the manifest page (a real one is a few KiB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)


class TagSort(StrEnum):
    """A repository's tags by name (byte order), or by date: the newest push first; tags pushed at the same moment
    (by one PUT with several tags) in reverse name order, which keeps the order one index's, read backwards."""

    NAME = "name"
    DATE = "date"

    @classmethod
    def parse(cls, text: str | None) -> TagSort:
        return cls.DATE if text == cls.DATE.value else cls.NAME


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TagCursor:
    """Where a page of tags starts or ends: the tag's name, and for the date order its time (keyset paging: the
    database seeks to it through an index instead of counting past every earlier tag)."""

    sort: TagSort
    name: str
    updated_at: datetime | None = None

    @classmethod
    def of(cls, sort: TagSort, row: TagRow | TagView) -> TagCursor:
        return cls(sort, row.name, row.updated_at if sort is TagSort.DATE else None)

    def text(self) -> str:
        """`v1.2` by name; `1717171717123456~v1.2` by date (microseconds since 1970, then the name)."""
        if self.sort is TagSort.NAME or self.updated_at is None:
            return self.name
        moment = self.updated_at.replace(tzinfo=UTC) if self.updated_at.tzinfo is None else self.updated_at
        return f"{(moment - _EPOCH) // timedelta(microseconds=1)}~{self.name}"

    @classmethod
    def parse(cls, sort: TagSort, text: str | None) -> TagCursor | None:
        """The cursor of `?after=` / `?before=`, or None for anything that is not one (the first page then)."""
        if not text or len(text) > 200:
            return None
        if sort is TagSort.NAME:
            name = text
            updated_at = None
        else:
            micros, separator, name = text.partition("~")
            if not separator or not micros.isascii() or not micros.isdigit() or len(micros) > 17:
                return None
            updated_at = _EPOCH + timedelta(microseconds=int(micros))
        if not _TAG_CHARS.fullmatch(name):
            return None
        return cls(sort, name, updated_at)


# A cursor names a tag; it need not be one that still exists, but it has a tag's characters (distribution-spec).
_TAG_CHARS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class RepositorySummary:
    name: str
    tag_count: int
    last_push: datetime | None


@dataclass(frozen=True)
class TagRow:
    """A tag with the manifest it points at (its content, to read sizes and platforms from)."""

    name: str
    updated_at: datetime
    digest: str
    media_type: str
    size: int
    created_at: datetime
    content: bytes
    pushed_by: str | None = None


@dataclass(frozen=True)
class TagOf:
    """A tag on a manifest's page: its name, who pushed it there (None: not recorded) and when."""

    name: str
    pushed_by: str | None
    updated_at: datetime


@dataclass(frozen=True)
class RecentPush:
    """A tag push for the front page: which tag of which repository, onto which manifest, by whom, when."""

    repository: str
    tag: str
    digest: str
    pushed_by: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ManifestRow:
    digest: str
    media_type: str
    size: int
    created_at: datetime
    content: bytes
    artifact_type: str | None = None
    subject: str | None = None


class BrowseQueries(Protocol):
    """The read model behind the repository pages. Every method is one query; lists are paged in the database."""

    def rights_of(self, account_id: int) -> dict[str, Right]:
        """Every namespace `account_id` is a member of, with its right."""
        ...

    def repositories(
        self, *, search: str, namespaces: Iterable[str] | None, offset: int, limit: int
    ) -> list[RepositorySummary]:
        """Repositories with at least one manifest, by name; `search` a substring of the name; `namespaces` (None:
        all) the namespaces to keep (a bare name is its own namespace)."""
        ...

    def repository_id(self, name: str) -> int | None: ...

    def tag_count(self, repository_id: int) -> int: ...

    def tags(
        self,
        repository_id: int,
        *,
        sort: TagSort,
        after: TagCursor | None = None,
        before: TagCursor | None = None,
        limit: int,
    ) -> list[TagRow]:
        """At most `limit` tags in `sort` order with their manifests, in one query: those after `after`, or (with
        `before`) the last `limit` before `before`, still in `sort` order."""
        ...

    def recent_pushes(self, *, namespaces: Iterable[str] | None, limit: int) -> list[RecentPush]:
        """The latest tag pushes, newest first, in one query; `namespaces` (None: all) as in `repositories`."""
        ...

    def manifest(self, repository_id: int, digest: str) -> ManifestRow | None: ...

    def manifests(self, repository_id: int, digests: Iterable[str]) -> dict[str, ManifestRow]:
        """Those of `digests` that the repository holds, in one query."""
        ...

    def tags_of(self, repository_id: int, digest: str) -> list[TagOf]:
        """The tags pointing at the manifest, by name (at most 1000), with who pushed each and when."""
        ...


# --- reading stored manifests -----------------------------------------------------------------------------------


def load_document(content: bytes) -> dict[str, Any]:
    """The manifest's JSON object, or {} when it is none (the registry validated it on push, but be safe)."""
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def is_index(media_type: str, document: dict[str, Any]) -> bool:
    return media_type in INDEX_TYPES or (isinstance(document.get("manifests"), list) and "config" not in document)


def _size_of(descriptor: Any) -> int:
    if isinstance(descriptor, dict):
        size = descriptor.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            return size
    return 0


def _descriptors(value: Any) -> list[dict[str, Any]]:
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def image_size(document: dict[str, Any]) -> int:
    """An image's compressed size, as pulled: its config plus its layers (as their descriptors say)."""
    return _size_of(document.get("config")) + sum(_size_of(layer) for layer in _descriptors(document.get("layers")))


def is_attestation(child: dict[str, Any]) -> bool:
    """buildx's provenance and SBOM entries sit in the index as `unknown/unknown` manifests: not platforms."""
    annotations = child.get("annotations")
    if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    platform = child.get("platform")
    return isinstance(platform, dict) and platform.get("os") == "unknown" and platform.get("architecture") == "unknown"


def platform_text(platform: Any) -> str | None:
    """`linux/arm64/v8` from an index entry's platform, or None without one."""
    if not isinstance(platform, dict):
        return None
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    text = "/".join(p for p in parts if isinstance(p, str) and p)
    if isinstance(platform.get("os.version"), str) and platform["os.version"]:
        text += f" ({platform['os.version']})"
    return text or None


@dataclass(frozen=True)
class Child:
    digest: str
    media_type: str
    size: int
    platform: str | None
    attestation: bool


def index_children(document: dict[str, Any]) -> list[Child]:
    children = []
    for entry in _descriptors(document.get("manifests")):
        digest = entry.get("digest")
        if not isinstance(digest, str):
            continue
        media_type = entry.get("mediaType")
        children.append(
            Child(
                digest=digest,
                media_type=media_type if isinstance(media_type, str) else "",
                size=_size_of(entry),
                platform=platform_text(entry.get("platform")),
                attestation=is_attestation(entry),
            )
        )
    return children


def platforms(document: dict[str, Any]) -> list[str]:
    """The platforms of a multi-arch index, in its order, without attestations and repeats."""
    seen: list[str] = []
    for child in index_children(document):
        if child.platform and not child.attestation and child.platform not in seen:
            seen.append(child.platform)
    return seen


@dataclass(frozen=True)
class TagView:
    """One row of a repository's tag list, ready for the page."""

    name: str
    digest: str
    media_type: str
    updated_at: datetime
    created_at: datetime
    size: int | None
    platforms: list[str]
    is_index: bool
    pushed_by: str | None = None


def tag_views(rows: list[TagRow], children: dict[str, ManifestRow]) -> list[TagView]:
    """Rows with sizes and platforms: an image's size is its config and layers; an index's is the sum over its
    platform images that the repository holds (`children`, fetched in one query for the whole page)."""
    views = []
    for row in rows:
        document = load_document(row.content)
        index = is_index(row.media_type, document)
        size: int | None
        if index:
            sizes = [
                image_size(load_document(children[c.digest].content))
                for c in index_children(document)
                if not c.attestation and c.digest in children
            ]
            size = sum(sizes) if sizes else None
        else:
            size = image_size(document)
        views.append(
            TagView(
                name=row.name,
                digest=row.digest,
                media_type=row.media_type,
                updated_at=row.updated_at,
                created_at=row.created_at,
                size=size,
                platforms=platforms(document) if index else [],
                is_index=index,
                pushed_by=row.pushed_by,
            )
        )
    return views


class TagFetch(Protocol):
    def __call__(self, *, after: TagCursor | None, before: TagCursor | None, limit: int) -> list[TagRow]: ...


@dataclass(frozen=True)
class TagPage:
    """One page of a repository's tags, with the cursors of the pages before and after it (None: no such page)."""

    rows: list[TagRow]
    previous: TagCursor | None
    next: TagCursor | None


def tag_page(
    fetch: TagFetch, sort: TagSort, *, after: TagCursor | None, before: TagCursor | None, per_page: int
) -> TagPage:
    """A keyset page: one fetch of `per_page + 1` rows (the extra one says whether there is more that way).

    `before` (a Previous link) reads backwards from the first tag of the page the reader was on; when nothing is
    before it any more (those tags were deleted), that is the first page, read again."""
    if before is not None:
        found = fetch(after=None, before=before, limit=per_page + 1)
        if found:
            rows = found[-per_page:]
            previous = TagCursor.of(sort, rows[0]) if len(found) > per_page else None
            return TagPage(rows, previous, TagCursor.of(sort, rows[-1]))
        after = None
    found = fetch(after=after, before=None, limit=per_page + 1)
    rows = found[:per_page]
    previous = TagCursor.of(sort, rows[0]) if after is not None and rows else None
    following = TagCursor.of(sort, rows[-1]) if len(found) > per_page else None
    return TagPage(rows, previous, following)


def child_digests(rows: Iterable[TagRow]) -> set[str]:
    """The children of the indexes among `rows`, to fetch in one query."""
    wanted: set[str] = set()
    for row in rows:
        document = load_document(row.content)
        if is_index(row.media_type, document):
            wanted.update(c.digest for c in index_children(document) if not c.attestation)
    return wanted


# --- image configs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass(frozen=True)
class ImageConfig:
    platform: str | None = None
    created: str | None = None
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_config(data: bytes) -> ImageConfig | None:
    """An OCI / Docker image config's fields the page shows, or None when it is no JSON object."""
    document = load_document(data)
    if not document:
        return None
    inner = document.get("config")
    inner = inner if isinstance(inner, dict) else {}
    labels = inner.get("Labels")
    ports = inner.get("ExposedPorts")
    history = []
    for entry in _descriptors(document.get("history")):
        history.append(
            HistoryEntry(
                created=_text(entry.get("created")) or "",
                created_by=_text(entry.get("created_by")) or "",
                comment=_text(entry.get("comment")) or "",
                empty_layer=entry.get("empty_layer") is True,
            )
        )
    return ImageConfig(
        platform=platform_text(
            {"os": document.get("os"), "architecture": document.get("architecture"), "variant": document.get("variant")}
        ),
        created=_text(document.get("created")),
        env=_strings(inner.get("Env")) or [],
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        working_dir=_text(inner.get("WorkingDir")),
        user=_text(inner.get("User")),
        exposed_ports=sorted(k for k in ports if isinstance(k, str)) if isinstance(ports, dict) else [],
        labels={k: v for k, v in sorted(labels.items()) if isinstance(k, str) and isinstance(v, str)}
        if isinstance(labels, dict)
        else {},
        history=history,
    )


def human_size(size: int | None) -> str:
    """1536 -> `1.5 KiB`; what docker and the registries' pages show."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def short_digest(digest: str) -> str:
    """`sha256:0123456789ab`: the algorithm and the first twelve hex digits, as docker shows image ids."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest[:19]


def page_number(text: str | None, maximum: int = 100_000) -> int:
    """`?page=` as a page number from 1; anything else is page 1."""
    try:
        number = int(text or "1")
    except ValueError:
        return 1
    return min(max(number, 1), maximum)

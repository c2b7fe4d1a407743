"""In-memory fakes of the domain's ports, for unit tests that need no database, files or network."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stevedore.domain.errors import (
    AccountExists,
    BlobUnknown,
    DigestInvalid,
    InviteUnknown,
    RangeInvalid,
    TokenInvalid,
    UploadUnknown,
)
from stevedore.domain.model import Account, BlobInfo, ByteRange, Digest, Invite, InviteRecord, RepositoryName, Tag
from stevedore.domain.namespaces import Member, Namespace, Right
from stevedore.domain.ports import MailNotSent
from stevedore.domain.registry import StoredManifest, UploadSession
from stevedore.domain.repository_deletion import RemovedManifest, RemovedRepository, RemovedTag


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class PlainPasswordHasher:
    """Not bcrypt: a salted-less SHA-256, so unit tests run fast. Still compares in constant time."""

    def hash(self, password: str) -> str:
        return "sha256$" + hashlib.sha256(password.encode()).hexdigest()

    def verify(self, password: str, hashed: str) -> bool:
        return hmac.compare_digest(self.hash(password), hashed)


class InMemoryTokenSigner:
    _instances = itertools.count()

    def __init__(self) -> None:
        self.issued: dict[str, dict[str, Any]] = {}
        self._prefix = f"s{next(self._instances)}t"  # two signers never make the same token

    def sign(self, claims: dict[str, Any]) -> str:
        token = f"{self._prefix}{len(self.issued)}"
        self.issued[token] = json.loads(json.dumps(claims))
        return token

    def verify(self, token: str) -> dict[str, Any]:
        if token not in self.issued:
            raise TokenInvalid()
        return dict(self.issued[token])


class InMemoryAccountStore:
    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {}
        self.invites: dict[int, Invite] = {}
        self._ids = itertools.count(1)  # like the real table: an id is never handed out twice

    def get(self, account_id: int) -> Account | None:
        return self.accounts.get(account_id)

    def by_username(self, username: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.username == username), None)

    def add(self, account: Account) -> Account:
        if self.by_username(account.username) or (account.email and self.by_email(account.email)):
            raise AccountExists()  # as the unique indexes on lower(username) and lower(email) do
        stored = replace(account, id=next(self._ids))
        self.accounts[stored.id] = stored  # type: ignore[index]
        return stored

    def update(self, account: Account) -> None:
        self.accounts[account.id] = account  # type: ignore[index]

    def delete(self, account: Account) -> None:
        self.accounts.pop(account.id, None)  # type: ignore[arg-type]

    def disable_robots_of(self, namespace: str) -> int:
        robots = [a for a in self.accounts.values() if a.username.startswith(namespace + "+") and a.is_active]
        for robot in robots:
            robot.is_active, robot.token_generation = False, robot.token_generation + 1
        return len(robots)

    def delete_robots_of(self, namespace: str) -> int:
        robots = [a for a in self.accounts.values() if a.username.startswith(namespace + "+")]
        for robot in robots:
            self.delete(robot)
        return len(robots)

    def count(self) -> int:
        return len(self.accounts)

    def count_active_admins(self) -> int:
        return sum(1 for a in self.accounts.values() if a.is_admin and a.is_active)

    def add_invite(self, invite: Invite) -> Invite:
        stored = replace(invite, id=len(self.invites) + 1)
        self.invites[stored.id] = stored  # type: ignore[index]
        return stored

    def count_invites_by(self, account_id: int, since: datetime) -> int:
        return sum(1 for i in self.invites.values() if i.created_by == account_id and i.created_at >= since)

    def invite_by_code_hash(self, code_hash: str) -> Invite | None:
        return next((i for i in self.invites.values() if i.code_hash == code_hash), None)

    def mark_invite_used(self, invite: Invite, account_id: int, when: datetime) -> None:
        stored = self.invites[invite.id]  # type: ignore[index]
        if stored.used_at is not None or stored.revoked_at is not None:
            raise InviteUnknown()
        stored.used_at, stored.used_by = when, account_id

    def by_email(self, email: str) -> Account | None:
        return next((a for a in self.accounts.values() if (a.email or "").lower() == email.lower()), None)

    def invite(self, invite_id: int) -> Invite | None:
        return self.invites.get(invite_id)

    def mark_invite_revoked(self, invite: Invite, account_id: int | None, when: datetime) -> None:
        stored = self.invites[invite.id]  # type: ignore[index]
        stored.revoked_at, stored.revoked_by = when, account_id
        invite.revoked_at, invite.revoked_by = when, account_id

    def invite_records(
        self, *, limit: int, before_id: int | None = None, created_by: int | None = None
    ) -> list[InviteRecord]:
        def name(account_id: int | None) -> str | None:
            account = self.accounts.get(account_id) if account_id is not None else None
            return account.username if account else None

        newest_first = sorted(self.invites.values(), key=lambda i: i.id or 0, reverse=True)
        page = [i for i in newest_first if before_id is None or (i.id or 0) < before_id]
        page = [i for i in page if created_by is None or i.created_by == created_by][:limit]
        return [InviteRecord(replace(i), name(i.created_by), name(i.used_by), name(i.revoked_by)) for i in page]


class InMemoryMailer:
    """The Mailer port in a list: `sent` holds (to, subject, body); `fail_with` makes the next sends fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail_with: str | None = None

    def send(self, to: str, subject: str, body: str) -> None:
        if self.fail_with:
            raise MailNotSent(self.fail_with)
        self.sent.append((to, subject, body))


class InMemoryBlobStore:
    """The BlobStore port in dicts, raising what FolderBlobStore raises. Yields blobs in `chunk_size` pieces."""

    def __init__(self, chunk_size: int = 1024 * 1024) -> None:
        self.chunk_size = chunk_size
        self.blobs: dict[Digest, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.kept: dict[str, bytes] = {}  # verified by `finish(place=False)`, not yet placed

    @staticmethod
    def _check_id(upload_id: str) -> None:
        # The folder store refuses ids that are not a plain file name the same way.
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise UploadUnknown()

    def _upload(self, upload_id: str) -> bytearray:
        self._check_id(upload_id)
        if upload_id not in self.uploads:
            raise UploadUnknown(detail={"upload": upload_id})
        return self.uploads[upload_id]

    def stat(self, digest: Digest, location: str | None = None) -> BlobInfo | None:
        data = self.blobs.get(digest)
        return None if data is None else BlobInfo(digest, len(data))

    def open(self, digest: Digest, byte_range: ByteRange | None = None, location: str | None = None) -> Iterator[bytes]:
        if digest not in self.blobs:
            raise BlobUnknown(detail={"digest": str(digest)})  # raised by the call, not by the first next()
        data = self.blobs[digest]
        if byte_range is not None:
            data = data[byte_range.start : byte_range.end + 1]
        return (data[i : i + self.chunk_size] for i in range(0, len(data), self.chunk_size))

    def local_path(self, digest: Digest) -> str | None:
        return None

    def download_url(self, digest: Digest, location: str | None = None) -> str | None:
        return None

    def min_chunk_length(self) -> int | None:
        return None

    def start_upload(self, upload_id: str, digest_algorithm: str = "sha256") -> None:
        self._check_id(upload_id)
        if upload_id in self.uploads:
            raise FileExistsError(upload_id)  # as the folder store's os.makedirs(exist_ok=False)
        self.uploads[upload_id] = bytearray()

    def upload_size(self, upload_id: str) -> int:
        return len(self._upload(upload_id))

    def append(self, upload_id: str, chunks: Iterable[bytes], offset: int | None = None) -> int:
        data = self._upload(upload_id)
        if offset is not None and offset != len(data):
            raise RangeInvalid(f"upload is at offset {len(data)}, chunk starts at {offset}", detail={"size": len(data)})
        for chunk in chunks:
            data += chunk  # chunk by chunk: an iterator failing half-way leaves what came before, like a file
        return len(data)

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        data = self._upload(upload_id)
        candidate = bytes(data) + b"".join(final_chunks)
        if hashlib.new(digest.algorithm, candidate).hexdigest() != digest.hex:
            raise DigestInvalid(detail={"digest": str(digest)})  # the upload stays as it was
        data = candidate
        if place:
            self.blobs.setdefault(digest, bytes(data))
        else:
            self.kept[upload_id] = bytes(data)  # for `restore` to place
        self.abort(upload_id)
        return BlobInfo(digest, len(data))

    def abort(self, upload_id: str) -> None:
        self._check_id(upload_id)
        self.uploads.pop(upload_id, None)

    def restore(self, upload_id: str, digest: Digest) -> bool:
        if digest not in self.blobs and upload_id in self.kept:
            self.blobs[digest] = self.kept[upload_id]
        return digest in self.blobs

    def release(self, upload_id: str) -> None:
        self.kept.pop(upload_id, None)

    def delete(self, digest: Digest, location: str | None = None) -> None:
        self.blobs.pop(digest, None)


def _byte_order(names: Iterable[str], last: str | None, limit: int) -> list[str]:
    # SQL: `WHERE name > :last ORDER BY name LIMIT :limit` in a byte-ordered collation; an empty `last` is no cursor.
    ordered = sorted(names, key=lambda n: n.encode())
    if last:
        ordered = [n for n in ordered if n.encode() > last.encode()]
    return ordered[: max(limit, 0)]


class InMemoryRegistryStore:
    """The RegistryStore port in dicts, with SqlRegistryStore's semantics (adapters/sql/registry.py).

    Where the database would refuse a write with a constraint error (a link to an unrecorded blob, a tag on a missing
    manifest, a duplicate upload id), this raises LookupError or ValueError.
    """

    def __init__(self) -> None:
        self.repositories: dict[str, datetime] = {}
        self.blobs: dict[Digest, BlobInfo] = {}
        self.links: dict[str, set[Digest]] = {}
        self.uploads: dict[str, UploadSession] = {}
        self.closed_uploads: dict[str, datetime] = {}  # tombstones: id -> when closed
        self.manifests: dict[str, dict[Digest, StoredManifest]] = {}
        self.references: dict[tuple[str, Digest], tuple[frozenset[Digest], frozenset[Digest]]] = {}
        self.tags: dict[str, dict[str, Digest]] = {}
        self.pushers: dict[tuple[str, str], str | None] = {}  # (repository, tag) -> who pushed it there

    # --- repositories --------------------------------------------------------------------------------
    def repository_exists(self, name: RepositoryName) -> bool:
        return name.value in self.repositories

    def ensure_repository(self, name: RepositoryName, now: datetime) -> None:
        if name.value not in self.repositories:
            self.repositories[name.value] = now
            self.links[name.value] = set()
            self.manifests[name.value] = {}
            self.tags[name.value] = {}

    # --- blobs ---------------------------------------------------------------------------------------
    def add_blob(self, info: BlobInfo, now: datetime) -> BlobInfo:
        return self.blobs.setdefault(info.digest, info)

    def hold_blob(self, digest: Digest) -> BlobInfo | None:
        return self.blobs.get(digest)

    def link_blob(self, name: RepositoryName, digest: Digest, now: datetime) -> None:
        if digest not in self.blobs:
            raise LookupError(f"blob {digest} is not recorded")  # the foreign key to blobs.digest
        self.ensure_repository(name, now)
        self.links[name.value].add(digest)

    def linked_blob(self, name: RepositoryName, digest: Digest) -> BlobInfo | None:
        found = self.linked_blob_sizes(name, [digest])
        return BlobInfo(digest, found[digest]) if digest in found else None

    def linked_blob_sizes(self, name: RepositoryName, digests: Iterable[Digest]) -> dict[Digest, int]:
        linked = self.links.get(name.value, set())
        return {d: self.blobs[d].size for d in set(digests) if d in linked and d in self.blobs}

    def unlink_blob(self, name: RepositoryName, digest: Digest) -> bool:
        linked = self.links.get(name.value, set())
        if digest not in linked:
            return False
        linked.remove(digest)
        return True

    # --- uploads -------------------------------------------------------------------------------------
    def add_upload(self, upload: UploadSession) -> bool:
        if upload.id in self.uploads:
            return False  # the primary key: the SQL store inserts with ON CONFLICT DO NOTHING
        self.ensure_repository(upload.repository, upload.created_at)
        self.uploads[upload.id] = upload
        return True

    def get_upload(self, upload_id: str) -> UploadSession | None:
        return self.uploads.get(upload_id)

    def delete_upload(self, upload_id: str) -> bool:
        return self.uploads.pop(upload_id, None) is not None

    def delete_uploads_created_before(self, cutoff: datetime) -> list[str]:
        old = sorted(upload_id for upload_id, u in self.uploads.items() if u.created_at < cutoff)
        for upload_id in old:
            del self.uploads[upload_id]
        return old

    def close_upload(self, upload_id: str, now: datetime) -> bool:
        if upload_id in self.closed_uploads:
            return False
        self.closed_uploads[upload_id] = now
        return True

    def upload_closed(self, upload_id: str) -> bool:
        return upload_id in self.closed_uploads

    def prune_closed_uploads(self, closed_before: datetime) -> int:
        old = [upload_id for upload_id, closed in self.closed_uploads.items() if closed < closed_before]
        for upload_id in old:
            del self.closed_uploads[upload_id]
        return len(old)

    def count_uploads(self, account_id: int | None) -> int:
        return sum(1 for u in self.uploads.values() if u.account_id == account_id)

    def account_uploads(
        self, account_id: int | None, *, created_before: datetime | None = None, limit: int | None = None
    ) -> list[UploadSession]:
        found = [
            u
            for u in self.uploads.values()
            if u.account_id == account_id and (created_before is None or u.created_at < created_before)
        ]
        return sorted(found, key=lambda u: (u.created_at, u.id))[:limit]

    def blob_holders(self, digest: Digest) -> list[RepositoryName]:
        held = [name for name, linked in self.links.items() if digest in linked]
        return [RepositoryName(name) for name in _byte_order(held, None, len(held))]

    # --- manifests -----------------------------------------------------------------------------------
    @staticmethod
    def _copy(manifest: StoredManifest, with_content: bool = True) -> StoredManifest:
        return replace(
            manifest,
            content=manifest.content if with_content else b"",
            annotations=dict(manifest.annotations) if manifest.annotations else None,
        )

    def get_manifest(self, name: RepositoryName, digest: Digest) -> StoredManifest | None:
        found = self.manifests.get(name.value, {}).get(digest)
        return self._copy(found) if found else None

    def tagged_manifest(self, name: RepositoryName, tag: Tag) -> StoredManifest | None:
        digest = self.tags.get(name.value, {}).get(tag.value)
        return None if digest is None else self.get_manifest(name, digest)

    def present_manifests(self, name: RepositoryName, digests: Iterable[Digest]) -> set[Digest]:
        held = self.manifests.get(name.value, {})
        return {d for d in digests if d in held}

    def put_manifest(
        self,
        name: RepositoryName,
        manifest: StoredManifest,
        blobs: Iterable[Digest],
        children: Iterable[Digest],
        now: datetime,
    ) -> None:
        self.ensure_repository(name, now)
        held = self.manifests[name.value]
        if manifest.digest in held:
            return  # the same bytes were pushed before: nothing changes
        held[manifest.digest] = self._copy(manifest)
        self.references[(name.value, manifest.digest)] = (frozenset(blobs), frozenset(children))

    def tag_manifest(
        self, name: RepositoryName, tag: Tag, digest: Digest, now: datetime, pushed_by: str | None = None
    ) -> Digest | None:
        self.ensure_repository(name, now)
        if digest not in self.manifests[name.value]:
            raise LookupError(f"manifest {digest} is not in {name}")  # scalar_one() finds no row
        old = self.tags[name.value].get(tag.value)
        self.tags[name.value][tag.value] = digest
        self.pushers[(name.value, tag.value)] = pushed_by
        return old

    def delete_manifest(self, name: RepositoryName, digest: Digest) -> list[str] | None:
        held = self.manifests.get(name.value, {})
        if digest not in held:
            return None
        tags = self.tags[name.value]
        removed = sorted(t for t, d in tags.items() if d == digest)
        for tag in removed:
            del tags[tag]
        self.references.pop((name.value, digest), None)
        del held[digest]
        return removed

    def delete_tag(self, name: RepositoryName, tag: Tag) -> Digest | None:
        return self.tags.get(name.value, {}).pop(tag.value, None)

    def delete_repository(self, name: RepositoryName) -> RemovedRepository | None:
        """domain.repository_deletion.RepositoryDeletionStore: the repository's rows, and what they held."""
        if name.value not in self.repositories:
            return None
        held = self.manifests.pop(name.value)
        removed = RemovedRepository(
            [RemovedManifest(m.digest, m.media_type, m.size) for m in held.values()],
            [RemovedTag(tag, digest) for tag, digest in self.tags.pop(name.value).items()],
        )
        for digest in held:
            self.references.pop((name.value, digest), None)
        for key in [key for key in self.pushers if key[0] == name.value]:
            del self.pushers[key]
        for upload_id in [u.id for u in self.uploads.values() if u.repository == name]:
            del self.uploads[upload_id]
        del self.repositories[name.value], self.links[name.value]
        return removed

    # --- discovery -----------------------------------------------------------------------------------
    def list_tags(self, name: RepositoryName, last: str | None, limit: int) -> list[str]:
        return _byte_order(self.tags.get(name.value, {}), last, limit)

    def list_repositories(self, last: str | None, limit: int) -> list[str]:
        return _byte_order([n for n, held in self.manifests.items() if held], last, limit)

    def referrers(self, name: RepositoryName, subject: Digest) -> list[StoredManifest]:
        held = self.manifests.get(name.value, {}).values()
        return [self._copy(m, with_content=False) for m in held if m.subject == subject]


class InMemorySetupCodeStore:
    """The SetupCodeStore port in one attribute, with SqlSetupCodeStore's semantics."""

    def __init__(self) -> None:
        self.stored: tuple[str, str] | None = None

    def issue_if_absent(self, seed: str, code_hash: str, now: datetime) -> tuple[str, str]:
        if self.stored is None:
            self.stored = (seed, code_hash)
        return self.stored

    def current(self) -> tuple[str, str] | None:
        return self.stored

    def consume(self, code_hash: str) -> bool:
        if self.stored is None or self.stored[1] != code_hash:
            return False
        self.stored = None
        return True


class InMemoryNamespaceStore:
    """The NamespaceStore port in dicts, with SqlNamespaceStore's semantics (adapters/sql/namespaces.py). User names
    come from `accounts` and repositories from `registry` when given, as the real store reads those tables."""

    def __init__(
        self, accounts: InMemoryAccountStore | None = None, registry: InMemoryRegistryStore | None = None
    ) -> None:
        self.accounts = accounts or InMemoryAccountStore()
        self.registry = registry or InMemoryRegistryStore()
        self.namespaces: dict[str, Namespace] = {}
        self.rights: dict[str, dict[int, Right]] = {}
        self.locked: list[str] = []

    def get(self, name: str) -> Namespace | None:
        return self.namespaces.get(name)

    def add(self, namespace: Namespace) -> bool:
        if namespace.name in self.namespaces:
            return False
        self.namespaces[namespace.name] = namespace
        self.rights[namespace.name] = {}
        return True

    def all(self) -> list[Namespace]:
        return [self.namespaces[name] for name in _byte_order(self.namespaces, None, len(self.namespaces))]

    def lock(self, name: str) -> None:
        self.locked.append(name)  # one writer at a time here: nothing to wait for

    def right_of(self, name: str, account_id: int) -> Right | None:
        return self.rights.get(name, {}).get(account_id)

    def set_member(self, name: str, account_id: int, right: Right) -> None:
        if name not in self.namespaces:
            raise LookupError(f"no namespace {name}")  # the foreign key
        self.rights[name][account_id] = right

    def remove_member(self, name: str, account_id: int) -> bool:
        return self.rights.get(name, {}).pop(account_id, None) is not None

    def members(self, name: str) -> list[Member]:
        found = [
            Member(name, account_id, self.accounts.accounts[account_id].username, right)
            for account_id, right in self.rights.get(name, {}).items()
            if account_id in self.accounts.accounts
        ]
        return sorted(found, key=lambda m: m.username)

    def is_username(self, name: str) -> bool:
        return self.accounts.by_username(name) is not None

    def has_repositories(self, name: str) -> bool:
        return any(repo == name or repo.startswith(name + "/") for repo in self.registry.repositories)

"""Domain layer: the ports. Adapters implement these Protocols; the use cases receive them as arguments."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from stevedore.domain.errors import StevedoreError
from stevedore.domain.model import Account, BlobInfo, ByteRange, Digest, Invite, InviteRecord

if TYPE_CHECKING:  # namespaces.py imports this module
    from stevedore.domain.namespaces import Member, Namespace, Right


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class PasswordHasher(Protocol):
    """bcrypt or alike. Checks are expensive, so an adapter may bound how many run at once: then `hash` and
    `verify` raise TooManyRequests when the server is too busy to take one more."""

    def hash(self, password: str) -> str: ...

    def verify(self, password: str, hashed: str) -> bool:
        """True when `password` matches; compares in constant time; never raises for a bad hash."""
        ...


class TokenSigner(Protocol):
    def sign(self, claims: dict[str, Any]) -> str:
        """A compact, URL-safe, tamper-proof token carrying `claims` (JSON-serializable)."""
        ...

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer made. Raises TokenInvalid for anything else. Expiry is the caller's."""
        ...


class Mailer(Protocol):
    """Sends plain-text mail from the configured sender. Raises MailNotSent when the mail cannot be handed on (the
    server refused it, cannot be reached, the folder cannot be written); never logs the body (it holds links that
    grant access)."""

    def send(self, to: str, subject: str, body: str) -> None: ...


class MailNotSent(StevedoreError):
    """The Mailer's error: the mail did not leave. The message says why, without the mail's body."""

    message = "the mail could not be sent"


class BlobStore(Protocol):
    """Content-addressed bytes plus in-progress uploads. Never holds a whole blob in memory.

    Failures of the storage itself (unreachable, 5xx after retries) raise StorageUnavailable and leave an upload as
    it was before the call. Uploads are identified by an opaque id chosen by the caller. `append` and `finish` may
    run on another process (or host) than `start_upload`: all state lives in the store. `finish` verifies the digest
    and makes the blob visible atomically and durably; a failed finish leaves the upload as it was and no blob
    visible.
    """

    def stat(self, digest: Digest, location: str | None = None) -> BlobInfo | None:
        """Asks the storage itself (a request for S3): for tools. The protocol's HEADs and existence checks come
        from the database."""
        ...

    def open(self, digest: Digest, byte_range: ByteRange | None = None, location: str | None = None) -> Iterator[bytes]:
        """The blob's bytes (or a range of them) in chunks. Raises BlobUnknown (and StorageUnavailable) from the
        call itself, before any chunk. `location` is the one `finish` returned, as recorded; stores that derive the
        place from the digest ignore it."""
        ...

    def local_path(self, digest: Digest) -> str | None:
        """A filesystem path to the blob when the store has one (for sendfile), else None."""
        ...

    def download_url(self, digest: Digest, location: str | None = None) -> str | None:
        """A URL a client may fetch the blob from directly (with Range), valid for a short while: a pull is then
        redirected there. None: the store has none (or is configured not to), the app streams the bytes. Making
        the URL sends no request to the storage."""
        ...

    def min_chunk_length(self) -> int | None:
        """The smallest chunk (but the last) an upload should be sent in, advertised to clients as
        OCI-Chunk-Min-Length: smaller chunks work but cost the store more. None: no minimum."""
        ...

    def start_upload(self, upload_id: str, digest_algorithm: str = "sha256") -> None:
        """Begin an upload; `digest_algorithm` is the one it will most likely be finished with (a hint)."""
        ...

    def upload_size(self, upload_id: str) -> int:
        """Bytes received so far. Raises UploadUnknown."""
        ...

    def append(self, upload_id: str, chunks: Iterable[bytes], offset: int | None = None) -> int:
        """Append chunks; with `offset`, raise RangeInvalid unless it equals the current size. Returns the new size."""
        ...

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        """Append `final_chunks`, verify the whole content against `digest` and commit it as a blob. The BlobInfo's
        `location` says where, when the store chose (the caller records it and passes it to `open` and `delete`);
        two uploads of one digest may give two locations. On a mismatch
        raise DigestInvalid and leave the upload exactly as it was before the call. Operations on one upload are
        serialized, so nothing can be appended to a blob once it is verified.

        `place=False`, for stores whose place derives from the digest (shared by every upload of it): verified and
        kept in the upload, but put at the digest's place only by `restore`, once the caller holds the blob's row
        and has decided to keep it (a push refused by a quota then leaves nothing; `release` drops the bytes)."""
        ...

    def abort(self, upload_id: str) -> None:
        """Forget an upload and its bytes. Idempotent."""
        ...

    def restore(self, upload_id: str, digest: Digest) -> bool:
        """After `finish`, once the caller holds the blob's row (so garbage collection no longer takes it): make sure
        the bytes are in place, put back from what `finish` kept of the upload if a collection removed them in
        between. False: they are not. Stores that choose a new location for every upload have nothing to do."""
        ...

    def release(self, upload_id: str) -> None:
        """Forget what `finish` kept of the upload for `restore`. Idempotent; nothing for stores that keep nothing."""
        ...

    def delete(self, digest: Digest, location: str | None = None) -> None:
        """Remove a blob's bytes (at `location` when given; garbage collection, a duplicate upload). Idempotent."""
        ...


class AccountStore(Protocol):
    def get(self, account_id: int) -> Account | None: ...

    def by_username(self, username: str) -> Account | None: ...

    def add(self, account: Account) -> Account:
        """Persist a new account and return it with its id. Raises AccountExists for a taken name."""
        ...

    def update(self, account: Account) -> None:
        """Store the account's changed fields (password hash, e-mail, flags)."""
        ...

    def delete(self, account: Account) -> None:
        """Remove the account. Ids are never reused, by a new account or otherwise."""
        ...

    def disable_robots_of(self, namespace: str) -> int:
        """Disable the active robot accounts `namespace+…`, ending their tokens (token generation up); how many."""
        ...

    def delete_robots_of(self, namespace: str) -> int:
        """Remove the robot accounts `namespace+…` (and, with them, their secrets); how many there were."""
        ...

    def count(self) -> int: ...

    def count_active_admins(self) -> int:
        """How many active administrators there are. Locks their rows until the transaction ends, so of two
        transactions each removing one of the last two administrators, the second sees the first's change."""
        ...

    def add_invite(self, invite: Invite) -> Invite: ...

    def invite_by_code_hash(self, code_hash: str) -> Invite | None: ...

    def count_invites_by(self, account_id: int, since: datetime) -> int:
        """How many invites the account made since then (revoked ones too)."""
        ...

    def mark_invite_used(self, invite: Invite, account_id: int, when: datetime) -> None:
        """Raises InviteUnknown when the invite was used or revoked meanwhile (two sign-ups racing)."""
        ...

    def by_email(self, email: str) -> Account | None:
        """The account with this e-mail address, compared ignoring case."""
        ...

    def invite(self, invite_id: int) -> Invite | None: ...

    def mark_invite_revoked(self, invite: Invite, account_id: int | None, when: datetime) -> None: ...

    def invite_records(
        self, *, limit: int, before_id: int | None = None, created_by: int | None = None
    ) -> list[InviteRecord]:
        """Newest first: at most `limit` invites whose id is below `before_id` (keyset paging), with names; with
        `created_by`, only the invites that account made."""
        ...


class SetupCodeStore(Protocol):
    """Where the one-time setup code of an empty installation lives (at most one), shared by every process."""

    def issue_if_absent(self, seed: str, code_hash: str, now: datetime) -> tuple[str, str]:
        """Store this (seed, code hash) unless a setup code is stored already, atomically across processes; return
        the stored (seed, code hash), ours or the one that was there."""
        ...

    def current(self) -> tuple[str, str] | None:
        """The stored (seed, code hash), or None."""
        ...

    def consume(self, code_hash: str) -> bool:
        """Remove the code if its hash is `code_hash`; True when this call removed it (only one caller ever does)."""
        ...


class NamespaceStore(Protocol):
    """Namespaces and their members. A namespace with a row is claimed; an account's own namespace needs none."""

    def get(self, name: str) -> Namespace | None: ...

    def add(self, namespace: Namespace) -> bool:
        """Insert the namespace unless one of that name exists; True when this call inserted it. Atomic: of two
        transactions adding the same name at once, exactly one gets True (the other waits for it to end)."""
        ...

    def all(self) -> list[Namespace]:
        """Every namespace with a row, by name."""
        ...

    def lock(self, name: str) -> None:
        """Until the transaction ends, other transactions changing this namespace's members wait for this one."""
        ...

    def right_of(self, name: str, account_id: int) -> Right | None:
        """The account's right on the namespace as a member, if any."""
        ...

    def set_member(self, name: str, account_id: int, right: Right) -> None:
        """Give the right (replacing any other) on a namespace that has a row."""
        ...

    def remove_member(self, name: str, account_id: int) -> bool: ...

    def members(self, name: str) -> list[Member]:
        """By user name."""
        ...

    def is_username(self, name: str) -> bool:
        """Does an account have this user name (and so own the namespace)?"""
        ...

    def has_repositories(self, name: str) -> bool:
        """Does any repository live in this namespace (`name` itself or `name/…`)?"""
        ...

"""Upload tickets: the id a POST hands out for an upload session, which says itself what the session is.

A POST used to write the session's row (and create its folder) before answering, so each blob of a push cost a write
transaction before any byte arrived: under docker's parallel pushes, SQLite's one write lock (or PostgreSQL's WAL
flush) was the queue everyone waited in. Now the POST writes nothing. Its ticket

    <session id>.<created, unix seconds in hex>.<digest algorithm>.<HMAC>

carries what the row held, signed with the server's secret for the repository and the account it was issued to (they
are not in the text: the request's URL and credentials supply them, and a ticket used anywhere else fails its MAC).
The session's row is written when its first bytes arrive (the first PATCH, committed before they are written), or
never: a blob sent whole in the closing PUT, as docker does for small blobs, needs none. Finished and cancelled
sessions leave a tombstone (RegistryStore.close_upload) for as long as their ticket is valid, so a ticket works once.

A ticket without a row is valid for `lifetime` after its creation; sessions with a row live as long as the row. Plain
UUIDs, the ids older releases handed out, are still read: for them the row decides alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from stevedore.domain.model import Digest, RepositoryName

_MAC_BYTES = 16


@dataclass(frozen=True)
class UploadTicket:
    session_id: str  # the row's and the blob store's id of the session: a UUID
    created_at: datetime
    digest_algorithm: str
    signed: bool = True  # False: an older release's plain UUID, which only its row makes valid


class UploadTickets:
    """Issues and reads tickets with one secret key (the same on every node)."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"stevedore upload ticket\0" + key).digest()

    def _mac(self, body: str, repository: RepositoryName, account_id: int | None) -> str:
        message = f"{body}\0{repository}\0{'' if account_id is None else account_id}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(
        self, repository: RepositoryName, account_id: int | None, digest_algorithm: str, created_at: datetime
    ) -> str:
        body = f"{uuid.uuid4()}.{int(created_at.timestamp()):x}.{digest_algorithm}"
        return f"{body}.{self._mac(body, repository, account_id)}"

    def read(self, text: str, repository: RepositoryName, account_id: int | None) -> UploadTicket | None:
        """The ticket `text` names, if it was issued by this key for this repository and account; None otherwise
        (a forged or altered ticket, another repository's or account's, or no ticket at all)."""
        if _is_uuid(text):
            return UploadTicket(text, datetime.fromtimestamp(0, UTC), "", signed=False)
        parts = text.split(".")
        if len(parts) != 4 or len(text) > 200 or not text.isascii():  # compare_digest refuses non-ASCII text
            return None
        session_id, created_hex, algorithm, mac = parts
        body = f"{session_id}.{created_hex}.{algorithm}"
        if not hmac.compare_digest(mac, self._mac(body, repository, account_id)):
            return None
        if not _is_uuid(session_id) or not Digest.is_supported_algorithm(algorithm):
            return None
        try:
            created_at = datetime.fromtimestamp(int(created_hex, 16), UTC)
        except (ValueError, OverflowError, OSError):
            return None
        return UploadTicket(session_id, created_at, algorithm)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False

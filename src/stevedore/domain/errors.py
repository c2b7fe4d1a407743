"""Domain layer: one tree of errors. They know nothing of HTTP; web/errors.py maps them to status codes."""

from __future__ import annotations


class StevedoreError(Exception):
    """Base of every error the domain raises on purpose."""

    message = "stevedore error"

    def __init__(self, message: str | None = None, detail: object = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail


# --- input that does not parse -------------------------------------------------------------------
class InvalidInput(StevedoreError):
    message = "invalid input"


class NameInvalid(InvalidInput):
    message = "invalid repository name"


class TagInvalid(InvalidInput):
    message = "manifest tag did not match URI"


class DigestInvalid(InvalidInput):
    message = "provided digest did not match uploaded content"


class UnsupportedAlgorithm(DigestInvalid):
    message = "unsupported digest algorithm"


class ReferenceInvalid(InvalidInput):
    message = "invalid reference: neither a tag nor a digest"


class ManifestInvalid(InvalidInput):
    message = "manifest invalid"


class SizeInvalid(InvalidInput):
    message = "provided length did not match content length"


class RangeInvalid(InvalidInput):
    message = "invalid content range"


class RangeNotSatisfiable(InvalidInput):
    message = "requested range not satisfiable"


class PayloadTooLarge(InvalidInput):
    message = "payload too large"


class Unsupported(InvalidInput):
    message = "the operation is unsupported"


# --- things that are not there -------------------------------------------------------------------
class NotFound(StevedoreError):
    message = "not found"


class NameUnknown(NotFound):
    message = "repository name not known to registry"


class BlobUnknown(NotFound):
    message = "blob unknown to registry"


class ManifestUnknown(NotFound):
    message = "manifest unknown"


class ManifestBlobUnknown(InvalidInput):
    """A manifest references a blob or child manifest that the repository does not have."""

    message = "manifest references a blob or manifest unknown to the repository"


class UploadUnknown(NotFound):
    message = "blob upload unknown to registry"


class AccountUnknown(NotFound):
    message = "account unknown"


class InviteUnknown(NotFound):
    message = "invite unknown, used or expired"


# --- who may do what -----------------------------------------------------------------------------
class Unauthenticated(StevedoreError):
    message = "authentication required: log in to this registry"


class Denied(StevedoreError):
    message = "requested access to the resource is denied"


class TokenInvalid(Unauthenticated):
    message = "token invalid or expired"


class TooManyRequests(StevedoreError):
    """The server refuses work it cannot take on now (password checks under a flood of logins); retry later."""

    message = "too many requests: retry in a moment"
    retry_after_seconds: int | None = 2  # bcrypt checks take a quarter of a second: the queue drains quickly


# --- accounts ------------------------------------------------------------------------------------
class AccountExists(StevedoreError):
    message = "an account with that name already exists"


class WeakPassword(InvalidInput):
    message = "password too weak"


class EmailInvalid(InvalidInput):
    message = "invalid e-mail address"


class UsernameInvalid(InvalidInput):
    message = "invalid user name"


class PaginationNumberInvalid(InvalidInput):
    message = "invalid number of results requested"


# --- limits --------------------------------------------------------------------------------------
class TooManyUploads(StevedoreError):
    """An account has as many upload sessions open as it may: it must finish or cancel some first."""

    message = "too many uploads in progress"
    retry_after_seconds: int | None = None  # set when a session will become reclaimable


# --- storage -------------------------------------------------------------------------------------
class StorageFull(StevedoreError):
    """The disk under the blob folder, the upload spool or the database is full (ENOSPC, SQLite's SQLITE_FULL).
    Whatever the request had written is removed: retry once space is freed."""

    message = "the registry's storage is full: nothing was stored; retry once space has been freed"


class StorageUnavailable(StevedoreError):
    """The blob storage cannot be reached or keeps failing (S3 down, 5xx or throttling after retries). The request
    changed nothing visible: retry later."""

    message = "the registry's blob storage is unavailable: nothing was stored; retry in a moment"

"""Domain layer: value objects that validate themselves, and the plain entities the use cases pass around."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from stevedore.domain.errors import (
    DigestInvalid,
    NameInvalid,
    ReferenceInvalid,
    TagInvalid,
    UnsupportedAlgorithm,
    UsernameInvalid,
)

# distribution-spec "Pulling manifests": <name> and <reference> grammars. Always used with fullmatch: `$` would
# also match before a trailing newline, and a tag "latest\n" would reach a response header.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_NAME_COMPONENT_RE = re.compile(_NAME_COMPONENT)
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# image-spec descriptor.md: algorithm ":" encoded
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# The shape a login name may have: what older releases accepted for new accounts, so nobody is locked out.
_LOGIN_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
MAX_USERNAME_LENGTH = 64
# Names that a new account may not take: they are (or will be) paths of the web index, or mean something to
# clients (`library` is Docker Hub's implied namespace). One list; the sign-up page and the CLI both go through it.
RESERVED_USERNAMES = frozenset(
    {
        "about", "account", "accounts", "admin", "administrator", "api", "audit", "auth", "favicon.ico", "health",
        "help", "invites", "library", "login", "logout", "me", "namespaces", "new", "password", "repositories",
        "robots", "robots.txt", "root", "search", "settings", "setup", "sign_up", "signup", "static", "stevedore",
        "system", "tokens", "users", "v1", "v2", "well-known",
    }
)  # fmt: skip

MAX_NAME_LENGTH = 255


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest `algorithm:hex`. Only sha256 and sha512 are accepted (image-spec registered algorithms)."""

    algorithm: str
    hex: str

    HEX_LENGTHS: ClassVar[dict[str, int]] = {"sha256": 64, "sha512": 128}

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST_RE.fullmatch(text or "")
        if not match:
            raise DigestInvalid(f"invalid digest {text!r}", detail={"digest": text})
        algorithm, encoded = match.groups()
        if algorithm not in cls.HEX_LENGTHS:
            raise UnsupportedAlgorithm(f"unsupported digest algorithm {algorithm!r}", detail={"digest": text})
        if len(encoded) != cls.HEX_LENGTHS[algorithm] or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise DigestInvalid(f"invalid {algorithm} digest {text!r}", detail={"digest": text})
        return cls(algorithm, encoded)

    @classmethod
    def is_supported_algorithm(cls, algorithm: str) -> bool:
        return algorithm in cls.HEX_LENGTHS

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True, order=True)
class RepositoryName:
    """A repository name: one or more lowercase path components, as the distribution-spec grammar says."""

    value: str

    @classmethod
    def parse(cls, text: str) -> RepositoryName:
        if not text or len(text) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(text):
            raise NameInvalid(f"invalid repository name {text!r}", detail={"name": text})
        return cls(text)

    @property
    def namespace(self) -> str | None:
        """The first path component when there is more than one (`team/app` -> `team`)."""
        head, sep, _ = self.value.partition("/")
        return head if sep else None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Tag:
    value: str

    @classmethod
    def parse(cls, text: str) -> Tag:
        if not text or not _TAG_RE.fullmatch(text):
            raise TagInvalid(f"invalid tag {text!r}", detail={"tag": text})
        return cls(text)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reference:
    """What follows `/manifests/`: a tag or a digest."""

    tag: Tag | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if ":" in text:
            return cls(digest=Digest.parse(text))
        try:
            return cls(tag=Tag.parse(text))
        except TagInvalid as exc:
            raise ReferenceInvalid(f"invalid reference {text!r}", detail={"reference": text}) from exc

    def __str__(self) -> str:
        return str(self.digest) if self.digest else str(self.tag)


def validate_username(text: str) -> str:
    """A new account's name: one repository-name path component (it becomes the account's own namespace), lowercase
    (so names are unique ignoring case), at most 64 characters, and not a reserved name."""
    name = (text or "").strip()
    if name != name.lower() and _NAME_COMPONENT_RE.fullmatch(name.lower()):
        raise UsernameInvalid(f"user names are lowercase: use {name.lower()!r}")
    if len(name) > MAX_USERNAME_LENGTH or not _NAME_COMPONENT_RE.fullmatch(name):
        raise UsernameInvalid(
            "user names are 1 to 64 characters: lowercase letters and digits, separated by single '.', '_' or "
            "'__', or by dashes (like one part of a repository name)"
        )
    if name in RESERVED_USERNAMES:
        raise UsernameInvalid(f"the user name {name!r} is reserved")
    return name


def is_login_name(text: str) -> bool:
    """Whether `text` could name an existing account (for logins: looser than `validate_username`, which newer
    accounts follow, so accounts made by older releases still log in)."""
    return bool(text) and _LOGIN_NAME_RE.fullmatch(text) is not None


# Robot accounts (domain/robots.py) are named `namespace+name`: no person's name holds a `+`, so none can collide.
ROBOT_SEPARATOR = "+"


def robot_namespace(username: str) -> str | None:
    """`team+ci` -> `team`, the namespace a robot belongs to; None for a person's name."""
    namespace, separator, _ = username.partition(ROBOT_SEPARATOR)
    return namespace if separator else None


@dataclass
class Account:
    id: int | None
    username: str
    email: str | None
    password_hash: str
    is_admin: bool = False
    is_active: bool = True
    created_at: datetime | None = None
    # Goes up whenever every token of the account must end: a new password, a disable.
    token_generation: int = 0


@dataclass
class Invite:
    id: int | None
    code_hash: str
    email: str | None
    created_by: int | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = None
    revoked_at: datetime | None = None
    revoked_by: int | None = None

    def is_usable(self, now: datetime) -> bool:
        """Single use, until it expires or is revoked."""
        return self.state(now) == "open"

    def state(self, now: datetime) -> str:
        """`used`, `revoked`, `expired` or `open` (in that order: a used invite stays used)."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        return "open"


@dataclass(frozen=True)
class InviteRecord:
    """An invite as the list shows it: with the names of who made it, used it and revoked it (None once such an
    account is deleted, or for the command line)."""

    invite: Invite
    invited_by: str | None
    used_by: str | None
    revoked_by: str | None


@dataclass(frozen=True)
class BlobInfo:
    """A blob's digest and size, and where its bytes are when the store chose the place (`location`, an S3 key
    relative to the store's prefix, recorded with the blob); None: the store derives the place from the digest."""

    digest: Digest
    size: int
    location: str | None = None


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range, as HTTP `Range: bytes=start-end` says it."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Scope:
    """One access request or grant: `repository:NAME:pull,push` or `registry:catalog:*`."""

    type: str
    name: str
    actions: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Scope:
        # The name may itself hold ':' (`host:port/name`), so the type is the first field and the actions the last.
        type_, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not type_ or not name:
            raise ReferenceInvalid(f"invalid scope {text!r}")
        return cls(type_, name, frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

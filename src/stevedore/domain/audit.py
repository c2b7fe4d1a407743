"""Domain: the audit log — who did what, when, from which address. The `AuditLog` port stores events raw; what is
shown (pages, the command line) goes through `shown`, so nothing a user typed can forge a line or hide text."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import Account, RepositoryName
from stevedore.domain.namespaces import namespace_of
from stevedore.domain.ports import Clock

# Column widths of the audit table: longer values are cut (an event is kept, never refused for its length).
MAX_NAME = 255  # actor_name, namespace
MAX_ADDRESS = 64  # an IPv6 address with a zone fits
MAX_TARGET = 512  # a repository name (255), a tag (128) and a digest (a sha512 is 135)
MAX_DETAIL = 1024


class AuditAction(StrEnum):
    """The fixed vocabulary of what an event says happened."""

    PUSH = "push"
    DELETE_MANIFEST = "delete_manifest"
    DELETE_TAG = "delete_tag"
    DELETE_BLOB = "delete_blob"
    DELETE_REPOSITORY = "delete_repository"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SETUP = "setup"
    SIGNUP = "signup"
    INVITE_CREATED = "invite_created"
    INVITE_REVOKED = "invite_revoked"
    NAMESPACE_CLAIMED = "namespace_claimed"
    NAMESPACE_CREATED = "namespace_created"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    ROBOT_CREATED = "robot_created"
    ROBOT_REVOKED = "robot_revoked"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_DELETED = "user_deleted"
    ADMIN_GRANTED = "admin_granted"
    ADMIN_REVOKED = "admin_revoked"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"
    LOGIN_THROTTLED = "login_throttled"
    ROBOT_DISABLED = "robot_disabled"
    ROBOT_ENABLED = "robot_enabled"
    GARBAGE_COLLECTED = "garbage_collected"
    TAG_RESTORED = "tag_restored"
    RULE_ADDED = "rule_added"
    RULE_REMOVED = "rule_removed"
    RETENTION_APPLIED = "retention_applied"
    QUOTA_SET = "quota_set"
    WEBHOOK_CREATED = "webhook_created"
    WEBHOOK_UPDATED = "webhook_updated"
    WEBHOOK_DELETED = "webhook_deleted"

    @classmethod
    def parse(cls, text: str) -> AuditAction:
        try:
            return cls(text)
        except ValueError:
            raise InvalidInput(f"{shown(text[:64])!r} is not an action of the audit log") from None


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened. The actor's id and name are both kept: the name survives the account's deletion
    (ids are never reused, so the id still names that account alone)."""

    at: datetime
    action: AuditAction
    actor_id: int | None = None
    actor_name: str | None = None
    address: str | None = None
    namespace: str | None = None
    target: str | None = None
    detail: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class AuditFilter:
    """What the list is narrowed to; None means any. Each is an exact match."""

    actor_name: str | None = None
    namespace: str | None = None
    action: AuditAction | None = None


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_before_id: int | None  # the `before` of the next (older) page, None on the last


class AuditLog(Protocol):
    """Where events are kept. `record` writes in the caller's transaction (an event of a change that rolls back is
    gone with it); `newest` reads newest first (by id, which only grows), at most `limit`, ids below `before_id`."""

    def record(self, event: AuditEvent) -> None: ...

    def newest(self, selection: AuditFilter, *, before_id: int | None, limit: int) -> list[AuditEvent]: ...


class Auditor:
    """The use cases: record an event as now, list a page of them."""

    def __init__(self, log: AuditLog, clock: Clock) -> None:
        self.log = log
        self.clock = clock

    def record(
        self,
        action: AuditAction,
        *,
        actor: Account | None = None,
        actor_name: str | None = None,
        address: str | None = None,
        namespace: str | None = None,
        repository: RepositoryName | None = None,
        target: str | None = None,
        detail: str | None = None,
    ) -> AuditEvent:
        """`repository` gives the namespace (`team/app` -> `team`) and, without a `target`, the target too."""
        if repository is not None:
            namespace = namespace or namespace_of(repository)
            target = target or repository.value
        event = AuditEvent(
            at=self.clock.now(),
            action=action,
            actor_id=actor.id if actor is not None else None,
            actor_name=_fit(actor.username if actor is not None else actor_name, MAX_NAME),
            address=_fit(address, MAX_ADDRESS),
            namespace=_fit(namespace, MAX_NAME),
            target=_fit(target, MAX_TARGET),
            detail=_fit(detail, MAX_DETAIL),
        )
        self.log.record(event)
        return event

    def page(self, selection: AuditFilter, *, before_id: int | None = None, limit: int = 50) -> AuditPage:
        if limit < 1:
            raise InvalidInput("the page size must be at least 1")
        found = self.log.newest(selection, before_id=before_id, limit=limit + 1)
        events = found[:limit]
        more = len(found) > limit and events[-1].id is not None
        return AuditPage(events, events[-1].id if more else None)


def _fit(value: str | None, length: int) -> str | None:
    if value is None or value == "":
        return None
    # PostgreSQL's text holds no NUL character: it is the one thing not kept as it came.
    return value.replace("\x00", "\ufffd")[:length]


def _needs_escape(character: str) -> bool:
    if character == "\\":
        return True  # so that `\x0a` typed by someone cannot pass for an escaped newline
    # Cc: control characters (newline, escape, DEL, C1); Cf: invisible formatting (bidi overrides, zero widths);
    # Zl, Zp: the line and paragraph separators; Cs: lone surrogates.
    return unicodedata.category(character) in {"Cc", "Cf", "Zl", "Zp", "Cs"}


def shown(value: str | None) -> str:
    r"""`value` as it may be shown on one line: control characters, invisible formatting characters, line
    separators and the backslash become `\xNN` (`\uNNNN` above 0xff), everything else stays as typed. HTML escaping
    is the template's job, on top of this."""
    if value is None:
        return ""
    return "".join(_escape(c) if _needs_escape(c) else c for c in value)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

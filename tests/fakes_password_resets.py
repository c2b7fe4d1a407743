"""In-memory PasswordResetStore for unit tests (kept apart from tests/fakes.py), with SqlPasswordResetStore's
semantics."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from stevedore.domain.password_resets import PasswordReset, PasswordResetUnknown


class InMemoryPasswordResetStore:
    def __init__(self) -> None:
        self.resets: dict[int, PasswordReset] = {}

    def add(self, reset: PasswordReset) -> PasswordReset:
        stored = replace(reset, id=len(self.resets) + 1)
        self.resets[stored.id or 0] = stored
        return replace(stored)

    def by_code_hash(self, code_hash: str) -> PasswordReset | None:
        found = next((r for r in self.resets.values() if r.code_hash == code_hash), None)
        return replace(found) if found else None

    def latest_for(self, account_id: int) -> PasswordReset | None:
        mine = [r for r in self.resets.values() if r.account_id == account_id]
        return replace(max(mine, key=lambda r: r.id or 0)) if mine else None

    def revoke_open(self, account_id: int, when: datetime) -> int:
        open_ = [r for r in self.resets.values() if r.account_id == account_id and r.used_at is None]
        open_ = [r for r in open_ if r.revoked_at is None]
        for reset in open_:
            reset.revoked_at = when
        return len(open_)

    def mark_used(self, reset: PasswordReset, when: datetime) -> None:
        stored = self.resets[reset.id or 0]
        if stored.used_at is not None or stored.revoked_at is not None:
            raise PasswordResetUnknown()
        stored.used_at = reset.used_at = when

"""Test double of the login failure store: counts in a dict, with the same start-over rule as the SQL store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stevedore.domain.login_backoff import BackoffKey, Failures, KeyKind


class InMemoryLoginFailureStore:
    def __init__(self) -> None:
        self.failures: dict[BackoffKey, Failures] = {}

    def read(self, keys: Sequence[BackoffKey]) -> dict[BackoffKey, Failures]:
        return {key: self.failures[key] for key in keys if key in self.failures}

    def record_failure(self, key: BackoffKey, at: datetime, *, forget_before: datetime) -> Failures:
        known = self.failures.get(key)
        count = 1 if known is None or known.last_at < forget_before else known.count + 1
        self.failures[key] = Failures(count, at)
        return self.failures[key]

    def reset(self, key: BackoffKey) -> None:
        self.failures.pop(key, None)

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        for key in [k for k, f in self.failures.items() if k.kind == kind and f.last_at < before]:
            del self.failures[key]

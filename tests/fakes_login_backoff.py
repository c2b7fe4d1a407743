"""Test double of the login failure store: records in a dict, with the same rules as the SQL store. `held` lists
the keys each `hold` asked for (one process: nothing to wait for)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stevedore.domain.login_backoff import BackoffKey, Failures, KeyKind


class InMemoryLoginFailureStore:
    def __init__(self) -> None:
        self.failures: dict[BackoffKey, Failures] = {}
        self.held: list[list[BackoffKey]] = []

    def hold(self, keys: Sequence[BackoffKey]) -> None:
        self.held.append(list(keys))

    def read(self, keys: Sequence[BackoffKey]) -> dict[BackoffKey, Failures]:
        return {key: self.failures[key] for key in keys if key in self.failures}

    def record_failure(self, key: BackoffKey, at: datetime, *, forget_before: datetime) -> Failures:
        known = self.failures.get(key)
        count = 1 if known is None or known.last_at < forget_before else known.count + 1
        self.failures[key] = Failures(count, at)
        return self.failures[key]

    def reset(self, key: BackoffKey) -> None:
        self.failures.pop(key, None)

    def release(self, key: BackoffKey) -> None:
        now = self.failures.get(key)
        if now is None:
            return
        if now.count <= 1:
            del self.failures[key]
        else:
            self.failures[key] = Failures(now.count - 1, now.last_at)

    def record_known(self, key: BackoffKey, at: datetime) -> None:
        self.failures[key] = Failures(0, at)

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        for key in [k for k, f in self.failures.items() if k.kind == kind and f.last_at < before]:
            del self.failures[key]

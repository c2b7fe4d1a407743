"""Web layer: the content lifecycle of a request (domain/lifecycle.py), composed of its parts: immutable tags and
retention rules, quotas, tag history and webhooks. Built on first use, so a request that only reads builds nothing;
every part works in the request's own transaction."""

from __future__ import annotations

from collections.abc import Sequence

from pyramid.request import Request

from stevedore.domain.lifecycle import Event, Lifecycle, Lifecycles, TagChange
from stevedore.domain.model import Digest, RepositoryName
from stevedore.web.ui import quotas, rules, tag_history, webhooks


class RequestLifecycle:
    """The lifecycle of one request: rules and quotas first (they may refuse), then what records the change."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._parts: Lifecycles | None = None

    @property
    def parts(self) -> Lifecycles:
        if self._parts is None:
            request = self.request
            self._parts = Lifecycles(
                [
                    rules.lifecycle_part(request),
                    quotas.lifecycle_part(request),
                    tag_history.lifecycle_part(request),
                    webhooks.lifecycle_part(request),
                ]
            )
        return self._parts

    def before_push(self, name: RepositoryName) -> None:
        self.parts.before_push(name)

    def before_blob(self, name: RepositoryName, digest: Digest, size: int) -> None:
        self.parts.before_blob(name, digest, size)

    def before_tag_change(self, change: TagChange) -> None:
        self.parts.before_tag_change(change)

    def changed(self, events: Sequence[Event]) -> None:
        self.parts.changed(events)


def request_lifecycle(request: Request) -> Lifecycle:
    return RequestLifecycle(request)

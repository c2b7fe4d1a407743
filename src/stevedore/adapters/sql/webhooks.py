"""SQL adapter: the WebhookStore port (webhooks and their outbox, in the caller's unit of work) and the delivery
queue the deliverers share, each of its steps a short transaction of its own, so that every process and node can
take part and each due delivery is held by one of them at a time."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables_webhooks import webhook_deliveries, webhooks
from stevedore.domain.lifecycle import EventAction
from stevedore.domain.webhooks import ClaimedDelivery, Delivery, DeliveryState, OutboxEntry, Webhook

MAX_ERROR = 512


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _webhook(row: Any) -> Webhook:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return Webhook(
        namespace=row.namespace,
        url=row.url,
        secret=row.secret,
        events=frozenset(EventAction(word) for word in row.events.split()),
        enabled=bool(row.enabled),
        created_at=created_at,
        created_by=row.created_by,
        id=row.id,
    )


def _delivery(row: Any) -> Delivery:
    repository = tag = None
    try:
        target = json.loads(row.payload)["events"][0].get("target", {})
        repository, tag = target.get("repository"), target.get("tag")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    created_at = _utc(row.created_at)
    assert created_at is not None
    return Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        action=row.action,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        next_attempt_at=_utc(row.next_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=created_at,
        sent_at=_utc(row.sent_at),
        repository=repository,
        tag=tag,
    )


class SqlWebhookStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def add(self, webhook: Webhook) -> Webhook:
        new_id = self.session.execute(
            sa.insert(webhooks)
            .values(
                namespace=webhook.namespace,
                url=webhook.url,
                secret=webhook.secret,
                events=" ".join(sorted(a.value for a in webhook.events)),
                enabled=webhook.enabled,
                created_at=webhook.created_at,
                created_by=webhook.created_by,
            )
            .returning(webhooks.c.id)
        ).scalar_one()
        return Webhook(**{**webhook.__dict__, "id": new_id})

    def of_namespace(self, namespace: str) -> list[Webhook]:
        rows = self.session.execute(
            sa.select(webhooks).where(webhooks.c.namespace == namespace).order_by(webhooks.c.id)
        )
        return [_webhook(row) for row in rows]

    def get(self, namespace: str, webhook_id: int) -> Webhook | None:
        row = self.session.execute(
            sa.select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.namespace == namespace)
        ).first()
        return _webhook(row) if row is not None else None

    def set_enabled(self, webhook_id: int, enabled: bool) -> None:
        self.session.execute(sa.update(webhooks).where(webhooks.c.id == webhook_id).values(enabled=enabled))

    def delete(self, webhook_id: int) -> None:
        # Its deliveries first: SQLite enforces the cascade only with foreign keys on, which a tool may not have.
        self.session.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id))
        self.session.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id))

    def enqueue(self, entries: Sequence[OutboxEntry], now: datetime) -> None:
        if not entries:
            return
        self.session.execute(
            sa.insert(webhook_deliveries),
            [
                {
                    "webhook_id": entry.webhook_id,
                    "event_id": entry.event_id,
                    "action": entry.action,
                    "payload": entry.payload,
                    "state": DeliveryState.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for entry in entries
            ],
        )

    def deliveries(self, webhook_id: int, limit: int) -> list[Delivery]:
        rows = self.session.execute(
            sa.select(webhook_deliveries)
            .where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        return [_delivery(row) for row in rows]

    def redeliver(self, webhook_id: int, delivery_id: int, now: datetime) -> bool:
        result = self.session.execute(
            sa.update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.webhook_id == webhook_id,
                webhook_deliveries.c.state == DeliveryState.FAILED.value,
            )
            .values(
                state=DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                claimed_until=None,
                claim=None,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class SqlDeliveryQueue:
    """Due deliveries, claimed one at a time with a lease: `claim` holds a row until `lease` from now, so another
    deliverer (thread, process, node) skips it; a deliverer that dies leaves it to be claimed again once the lease
    has run out. On PostgreSQL the candidate row is locked with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
    never wait for each other; on SQLite (one writer at a time) a conditional UPDATE of the lease decides."""

    def __init__(self, sessions: Callable[[], Session], read_sessions: Callable[[], Session] | None = None) -> None:
        self.sessions = sessions
        self.read_sessions = read_sessions or sessions

    def any_due(self, now: datetime) -> bool:
        """Whether a delivery may be due: a read, so that an idle deliverer takes no write lock (SQLite's)."""
        d = webhook_deliveries.c
        with self.read_sessions() as session:
            found = session.execute(sa.select(d.id).where(self._due(now)).limit(1)).first()
            return found is not None

    def _due(self, now: datetime) -> sa.ColumnElement[bool]:
        d = webhook_deliveries.c
        return sa.and_(
            d.state == DeliveryState.PENDING.value,
            d.next_attempt_at <= now,
            sa.or_(d.claimed_until.is_(None), d.claimed_until <= now),
        )

    def claim(self, now: datetime, lease: timedelta) -> ClaimedDelivery | None:
        d = webhook_deliveries.c
        token = secrets.token_hex(8)
        with self.sessions() as session, session.begin():
            # A disabled webhook's pending deliveries wait (they go once it is enabled again).
            candidates = (
                sa.select(d.id)
                .join(webhooks, webhooks.c.id == d.webhook_id)
                .where(self._due(now), webhooks.c.enabled.is_(True))
                .order_by(d.next_attempt_at, d.id)
            )
            if dialect_name(session) == "postgresql":
                ids = [
                    session.execute(
                        candidates.limit(1).with_for_update(skip_locked=True, of=webhook_deliveries)
                    ).scalar()
                ]
            else:
                ids = list(session.execute(candidates.limit(8)).scalars())
            for delivery_id in ids:
                if delivery_id is None:
                    continue
                claimed = session.execute(
                    sa.update(webhook_deliveries)
                    .where(d.id == delivery_id, self._due(now))
                    .values(claimed_until=now + lease, claim=token)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    row = session.execute(
                        sa.select(
                            d.id, d.webhook_id, d.payload, d.event_id, d.attempts, webhooks.c.url, webhooks.c.secret
                        )
                        .join(webhooks, webhooks.c.id == d.webhook_id)
                        .where(d.id == delivery_id)
                    ).one()
                    return ClaimedDelivery(
                        row.id, token, row.url, row.secret, row.payload, row.event_id, row.attempts, row.webhook_id
                    )
        return None

    def _finish(self, delivery: ClaimedDelivery, values: dict[str, Any]) -> bool:
        d = webhook_deliveries.c
        with self.sessions() as session, session.begin():
            result = session.execute(
                sa.update(webhook_deliveries)
                .where(d.id == delivery.id, d.claim == delivery.claim, d.state == DeliveryState.PENDING.value)
                .values(claimed_until=None, claim=None, attempts=delivery.attempts + 1, **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def sent(self, delivery: ClaimedDelivery, status: int, now: datetime) -> bool:
        """Recorded as sent; False when this claim no longer held it (its lease ran out and another took it)."""
        return self._finish(
            delivery,
            {
                "state": DeliveryState.SENT.value,
                "last_status": status,
                "last_error": None,
                "sent_at": now,
                "next_attempt_at": None,
            },
        )

    def retry(self, delivery: ClaimedDelivery, status: int | None, error: str, at: datetime) -> bool:
        return self._finish(delivery, {"last_status": status, "last_error": error[:MAX_ERROR], "next_attempt_at": at})

    def failed(self, delivery: ClaimedDelivery, status: int | None, error: str) -> bool:
        return self._finish(
            delivery,
            {
                "state": DeliveryState.FAILED.value,
                "last_status": status,
                "last_error": error[:MAX_ERROR],
                "next_attempt_at": None,
            },
        )

    def release(self, delivery: ClaimedDelivery) -> None:
        """Give a claimed delivery back untried (the deliverer is stopping)."""
        d = webhook_deliveries.c
        with self.sessions() as session, session.begin():
            session.execute(
                sa.update(webhook_deliveries)
                .where(d.id == delivery.id, d.claim == delivery.claim)
                .values(claimed_until=None, claim=None)
            )

    def prune(self, before: datetime, limit: int = 1000) -> int:
        """Forget up to `limit` sent or failed deliveries made before `before` (the log keeps the recent ones)."""
        d = webhook_deliveries.c
        with self.sessions() as session, session.begin():
            old = (
                sa.select(d.id)
                .where(d.created_at < before, d.state != DeliveryState.PENDING.value)
                .order_by(d.created_at)
                .limit(limit)
                .scalar_subquery()
            )
            result = session.execute(sa.delete(webhook_deliveries).where(d.id.in_(old)))
            return int(result.rowcount)  # type: ignore[attr-defined]

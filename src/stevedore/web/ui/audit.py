"""Web layer: the audit log — `request.audit`, which views call to record what they did, and the `/audit` page where
administrators read it (newest first, paged, filtered by user, namespace and action)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.view import view_config

from stevedore.adapters.sql.audit import SqlAuditLog
from stevedore.domain.audit import MAX_NAME, AuditAction, AuditEvent, AuditFilter, Auditor, shown
from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import Account, RepositoryName
from stevedore.web.ui.forms import administrator
from stevedore.web.ui.invites import when

if TYPE_CHECKING:
    from stevedore.web.app import Components

log = logging.getLogger(__name__)

TEMPLATE = "stevedore.web:templates/audit.jinja2"
PAGE_SIZE = 50


def includeme(config: Configurator) -> None:
    """Request methods and anything else this part wires into the app (app.py includes it)."""
    config.add_request_method(RequestAudit, "audit", reify=True)


class RequestAudit:
    """`request.audit`: records events of this request, with its caller and its client address (`client_addr`, which
    waitress takes from `X-Forwarded-For` only behind a trusted proxy)."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def record(
        self,
        action: AuditAction,
        *,
        actor: Account | None = None,
        actor_name: str | None = None,
        namespace: str | None = None,
        repository: RepositoryName | None = None,
        target: str | None = None,
        detail: str | None = None,
    ) -> AuditEvent:
        """In the request's transaction: the event stays only if the change it tells of does. The actor is the
        caller (from the session on pages, the credentials on /v2/) unless given."""
        components: Components = self.request.registry.stevedore
        auditor = Auditor(SqlAuditLog(self.request.dbsession), components.clock)
        return auditor.record(
            action,
            actor=actor or (None if actor_name is not None else self._caller()),
            actor_name=actor_name,
            address=self.request.client_addr,
            namespace=namespace,
            repository=repository,
            target=target,
            detail=detail,
        )

    def record_apart(
        self,
        action: AuditAction,
        *,
        actor: Account | None = None,
        actor_name: str | None = None,
        target: str | None = None,
        detail: str | None = None,
    ) -> None:
        """In a transaction of its own, once the request's is over: for refusals (a failed login), whose request
        transaction is dropped but whose event must stay. It runs after the request's transaction ended, so it never
        waits for a lock that transaction holds."""
        components: Components = self.request.registry.stevedore
        address = self.request.client_addr

        def write(_request: Request) -> None:
            try:
                with components.write_sessions() as session, session.begin():
                    Auditor(SqlAuditLog(session), components.clock).record(
                        action, actor=actor, actor_name=actor_name, address=address, target=target, detail=detail
                    )
            except Exception:  # the response is gone already; an operator must hear of it
                log.exception("an audit event (%s) could not be recorded", action.value)

        self.request.add_finished_callback(write)

    def _caller(self) -> Account | None:
        principal = self.request.principal
        return principal.account if principal is not None else None


@view_config(route_name="ui.audit", request_method="GET", renderer=TEMPLATE)
def audit_page(request: Request) -> dict[str, Any]:
    administrator(request)
    user = _field(request, "user")
    namespace = _field(request, "namespace")
    action_text = _field(request, "action")
    action = AuditAction.parse(action_text) if action_text else None
    before = _before_id(request)
    components: Components = request.registry.stevedore
    auditor = Auditor(SqlAuditLog(request.dbsession), components.clock)
    page = auditor.page(
        AuditFilter(actor_name=user, namespace=namespace, action=action), before_id=before, limit=PAGE_SIZE
    )
    filters = {k: v for k, v in {"user": user, "namespace": namespace, "action": action_text}.items() if v}
    return {
        "events": page.events,
        "next_query": {**filters, "before": page.next_before_id} if page.next_before_id else None,
        "first_query": filters,
        "paged": before is not None,
        "filtered": bool(filters),
        "user": user or "",
        "namespace": namespace or "",
        "action": action_text or "",
        "actions": [a.value for a in AuditAction],
        "shown": shown,
        "when": when,
    }


def _field(request: Request, key: str) -> str | None:
    value = (request.GET.get(key) or "").strip()
    return value[:MAX_NAME] or None


def _before_id(request: Request) -> int | None:
    text = request.GET.get("before", "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidInput("the page number is not valid")
    return int(text)

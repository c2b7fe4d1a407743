"""Web layer: a namespace's webhooks — the page where its admins (and the installation's administrators) add, enable,
disable, delete and test them and read each one's delivery log; this part of the content lifecycle of a request (the
outbox rows of a push or deletion, in its own transaction); and the delivery worker each serving process runs."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.webhooks import SqlDeliveryQueue, SqlWebhookStore
from stevedore.adapters.webhook_delivery import Deliverer, DeliveryWorker, SystemResolver, WebhookSender
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import InvalidInput
from stevedore.domain.lifecycle import Event, Lifecycle, ManifestEvent
from stevedore.domain.model import Account, RepositoryName
from stevedore.domain.namespaces import NamespaceUnknown, namespace_of
from stevedore.domain.webhooks import (
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    SUBSCRIBABLE,
    AddressPolicy,
    CreatedWebhook,
    DeliveryState,
    Resolver,
    TargetRefused,
    WebhookForm,
    WebhookService,
    WebhookUnknown,
    outbox_entries,
)
from stevedore.web.registry.challenge import public_url
from stevedore.web.ui.forms import pop_flashes, refused, sentence
from stevedore.web.ui.invites import when

log = logging.getLogger(__name__)

TEMPLATE = "stevedore.web:templates/webhooks.jinja2"
LOG_TEMPLATE = "stevedore.web:templates/webhook_deliveries.jinja2"
FLASH_DONE, FLASH_ERROR = "webhooks", "webhooks-error"
ACTIONS = {"enable", "disable", "delete", "ping"}
LOG_LENGTH = 50


def includeme(config: Configurator) -> None:
    """Routes of these pages (app.py includes this module), and the resolver the save-time check uses."""
    config.add_route("ui.namespace_webhooks", "/namespaces/{namespace}/webhooks")
    # Before the action route: `deliveries` is no action.
    config.add_route("ui.webhook_deliveries", "/namespaces/{namespace}/webhooks/{webhook}/deliveries")
    config.add_route(
        "ui.webhook_redeliver", "/namespaces/{namespace}/webhooks/{webhook}/deliveries/{delivery}/redeliver"
    )
    config.add_route("ui.webhook_action", "/namespaces/{namespace}/webhooks/{webhook}/{action}")
    config.registry.webhook_resolver = SystemResolver()


# --- delivery ---------------------------------------------------------------------------------------------------------
def build_deliverer(components: Any, resolver: Resolver | None = None) -> Deliverer:
    """A deliverer on the components' database, with the settings' address policy and timeout."""
    from stevedore.web.metrics import record_webhook_delivery

    settings = components.settings
    return Deliverer(
        SqlDeliveryQueue(components.write_sessions, components.read_sessions),
        WebhookSender(
            AddressPolicy(settings.webhook_allowed_networks), settings.webhook_timeout_seconds, resolver=resolver
        ),
        components.clock,
        observe=record_webhook_delivery,
    )


def delivery_task(components: Any) -> DeliveryWorker:
    """The background task (Components.background_tasks) that sends this process's share of the deliveries."""
    return DeliveryWorker(build_deliverer(components))


def _wake_worker(request: Request) -> None:
    """Once the request's transaction has committed its outbox rows, this process's worker sends them at once."""
    tasks = getattr(request.registry.stevedore, "background_tasks", [])
    workers = [task for task in tasks if isinstance(task, DeliveryWorker)]
    if not workers:
        return

    def after_commit(committed: bool) -> None:
        if committed:
            for worker in workers:
                worker.wake()

    request.tm.get().addAfterCommitHook(after_commit)


# --- the lifecycle part -----------------------------------------------------------------------------------------------
class WebhookOutbox:
    """Writes one outbox row per webhook and event it subscribes to, in the request's transaction: one indexed query
    of the namespace's webhooks per change, and nothing more when it has none."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def before_push(self, name: RepositoryName) -> None:
        pass

    def before_blob(self, name: RepositoryName, digest: Any, size: int) -> None:
        pass

    def before_tag_change(self, change: Any) -> None:
        pass

    def changed(self, events: Sequence[Event]) -> None:
        by_namespace: dict[str, list[ManifestEvent]] = defaultdict(list)
        for event in events:
            if isinstance(event, ManifestEvent) and event.action in SUBSCRIBABLE:
                by_namespace[namespace_of(event.repository)].append(event)
        if not by_namespace:
            return
        request = self.request
        store = SqlWebhookStore(request.dbsession)
        queued = False
        for namespace, found in by_namespace.items():
            hooks = [w for w in store.of_namespace(namespace) if w.enabled]
            if not hooks:
                continue
            info = {"method": request.method, "useragent": (request.user_agent or "")[:200]}
            entries = outbox_entries(hooks, found, public_url(request), info)
            store.enqueue(entries, request.registry.stevedore.clock.now())
            queued = queued or bool(entries)
        if queued:
            _wake_worker(request)


def lifecycle_part(request: Request) -> Lifecycle:
    """This part of the request's lifecycle (web/lifecycle.py), built on its first use in a request that writes."""
    return WebhookOutbox(request)


# --- the pages --------------------------------------------------------------------------------------------------------
def _service(request: Request) -> WebhookService:
    components = request.registry.stevedore
    return WebhookService(
        SqlWebhookStore(request.dbsession),
        request.access,
        components.clock,
        request.registry.webhook_resolver,
        AddressPolicy(components.settings.webhook_allowed_networks),
    )


def _caller(request: Request) -> Account:
    account: Account | None = request.web_account
    if account is None or not account.is_active:
        raise HTTPForbidden()
    return account


def _namespace(request: Request, service: WebhookService, caller: Account) -> str:
    """The route's namespace, if the caller may manage it (else 403, the same whether or not it exists) and it
    exists (an administrator may manage any: 404 for one that does not)."""
    from stevedore.web.ui.namespaces import _management

    name = service.authorize(caller, request.matchdict["namespace"])
    if not _management(request).exists(name):
        raise NamespaceUnknown(f"There is no namespace {name}.")
    return name


def _webhook_id(request: Request) -> int:
    text = request.matchdict["webhook"]
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise HTTPNotFound()
    return int(text)


@view_config(route_name="ui.namespace_webhooks", request_method="GET", renderer=TEMPLATE)
def webhooks_page(request: Request) -> dict[str, Any]:
    caller = _caller(request)
    service = _service(request)
    return _page(request, service, caller, _namespace(request, service, caller))


@view_config(route_name="ui.namespace_webhooks", request_method="POST", renderer=TEMPLATE)
def create_webhook(request: Request) -> dict[str, Any]:
    caller = _caller(request)
    service = _service(request)
    namespace = _namespace(request, service, caller)
    url = str(request.POST.get("url", "")).strip()[: MAX_URL_LENGTH + 1]
    secret = str(request.POST.get("secret", "")).strip()[: MAX_SECRET_LENGTH + 1]
    events = sorted({str(e)[:16] for e in request.POST.getall("events")})[:8]
    try:
        created = service.create(caller, namespace, WebhookForm(url=url, events=frozenset(events), secret=secret))
    except InvalidInput as exc:
        if isinstance(exc, TargetRefused) and exc.detail:
            # What the host resolves to stays here: on the page it would map the internal DNS for any namespace admin.
            log.info("webhook of %s refused: %s", namespace, exc.detail)
        refused(request, 400)
        form = {"url": url, "secret": "", "events": events}  # the secret is never sent back into a page
        return _page(request, service, caller, namespace, form=form, error=sentence(exc.message))
    webhook = created.webhook
    request.audit.record(
        AuditAction.WEBHOOK_CREATED,
        actor=caller,
        namespace=namespace,
        target=webhook.redacted_url,
        detail=f"webhook {webhook.id}, events {webhook.events_text}",
    )
    return _page(request, service, caller, namespace, created=created)


@view_config(route_name="ui.webhook_action", request_method="POST")
def webhook_action(request: Request) -> Response:
    caller = _caller(request)
    service = _service(request)
    namespace = _namespace(request, service, caller)
    webhook_id, action = _webhook_id(request), request.matchdict["action"]
    if action not in ACTIONS:
        raise HTTPNotFound()
    try:
        if action == "delete":
            webhook = service.delete(caller, namespace, webhook_id)
            request.audit.record(
                AuditAction.WEBHOOK_DELETED,
                actor=caller,
                namespace=namespace,
                target=webhook.redacted_url,
                detail=f"webhook {webhook_id}",
            )
            message = f"The webhook to {webhook.redacted_url} is deleted, with its delivery log."
        elif action == "ping":
            webhook = service.get(caller, namespace, webhook_id)
            if not webhook.enabled:
                raise InvalidInput("the webhook is disabled: enable it to send a test event")
            service.ping(caller, namespace, webhook_id, public_url(request))
            _wake_worker(request)
            message = f'A test event (action "ping") is on its way to {webhook.redacted_url}: see its delivery log.'
        else:
            webhook = service.set_enabled(caller, namespace, webhook_id, action == "enable")
            request.audit.record(
                AuditAction.WEBHOOK_UPDATED,
                actor=caller,
                namespace=namespace,
                target=webhook.redacted_url,
                detail=f"webhook {webhook_id} {action}d",
            )
            message = f"The webhook to {webhook.redacted_url} is {action}d."
    except (WebhookUnknown, InvalidInput) as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.session.flash(message, FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace_webhooks", namespace=namespace))


@view_config(route_name="ui.webhook_deliveries", request_method="GET", renderer=LOG_TEMPLATE)
def delivery_log(request: Request) -> dict[str, Any]:
    caller = _caller(request)
    service = _service(request)
    namespace = _namespace(request, service, caller)
    webhook_id = _webhook_id(request)
    try:
        webhook = service.get(caller, namespace, webhook_id)
    except WebhookUnknown:
        raise HTTPNotFound() from None
    done, failed = pop_flashes(request, FLASH_DONE, FLASH_ERROR)
    return {
        "namespace": namespace,
        "webhook": webhook,
        "deliveries": service.deliveries(caller, namespace, webhook_id, LOG_LENGTH),
        "failed_state": DeliveryState.FAILED,
        "when": when,
        "done": done,
        "failed": failed,
    }


@view_config(route_name="ui.webhook_redeliver", request_method="POST")
def redeliver(request: Request) -> Response:
    caller = _caller(request)
    service = _service(request)
    namespace = _namespace(request, service, caller)
    webhook_id = _webhook_id(request)
    text = request.matchdict["delivery"]
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise HTTPNotFound()
    try:
        webhook = service.redeliver(caller, namespace, webhook_id, int(text))
    except WebhookUnknown as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.audit.record(
            AuditAction.WEBHOOK_UPDATED,
            actor=caller,
            namespace=namespace,
            target=webhook.redacted_url,
            detail=f"webhook {webhook_id}: delivery {text} sent again",
        )
        _wake_worker(request)
        request.session.flash(f"Delivery {text} will be sent again.", FLASH_DONE)
    return HTTPSeeOther(
        location=request.route_path("ui.webhook_deliveries", namespace=namespace, webhook=str(webhook_id))
    )


def _page(
    request: Request,
    service: WebhookService,
    caller: Account,
    namespace: str,
    *,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    created: CreatedWebhook | None = None,
) -> dict[str, Any]:
    done, failed = pop_flashes(request, FLASH_DONE, FLASH_ERROR)
    return {
        "namespace": namespace,
        "webhooks": service.webhooks(caller, namespace),
        "events": [a.value for a in SUBSCRIBABLE],
        "form": form or {"url": "", "secret": "", "events": [a.value for a in SUBSCRIBABLE]},
        "error": error,
        "created": created,
        "when": when,
        "done": done,
        "failed": failed,
        "max_url": MAX_URL_LENGTH,
        "max_secret": MAX_SECRET_LENGTH,
    }

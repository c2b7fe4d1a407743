"""Web layer: a namespace's tag rules page — immutable tags and retention (domain/rules.py) — and this part of the
content lifecycle for a request: the check that refuses a change to an immutable tag.

Whoever may see the namespace sees its rules; its admins (and the installation's administrators) add and remove
them, each change audited. Retention itself runs in `stevedore gc`."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.rules import SqlTagRuleStore
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import Denied, InvalidInput
from stevedore.domain.lifecycle import Lifecycle
from stevedore.domain.model import Account, RepositoryName
from stevedore.domain.namespaces import may_manage_namespace
from stevedore.domain.rules import (
    MAX_DAYS,
    MAX_KEEP_NEWEST,
    MAX_PATTERN_LENGTH,
    ImmutableTags,
    RuleForm,
    RuleKind,
    RuleService,
    RuleUnknown,
    TagRule,
)
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.invites import when
from stevedore.web.ui.namespaces import _management, _visible
from stevedore.web.ui.tokens import holder

TEMPLATE = "stevedore.web:templates/rules.jinja2"
FLASH_DONE, FLASH_ERROR = "rules", "rules-error"
MAX_FIELD = 300  # longer than any valid value: kept one over, so a too-long value stays wrong


def includeme(config: Configurator) -> None:
    """Routes of these pages (app.py includes this module)."""
    config.add_route("ui.namespace_rules", "/namespaces/{namespace}/rules")
    config.add_route("ui.namespace_rule_remove", "/namespaces/{namespace}/rules/{rule_id}/remove")


def _immutable(request: Request) -> ImmutableTags:
    """One per request, reading the namespace's immutable rules in the request's transaction, once per namespace."""
    found: ImmutableTags | None = request.__dict__.get("_stevedore_immutable_tags")
    if found is None:
        store = SqlTagRuleStore(request.dbsession)
        found = ImmutableTags(lambda namespace: store.rules_of(namespace, RuleKind.IMMUTABLE))
        request.__dict__["_stevedore_immutable_tags"] = found
    return found


def lifecycle_part(request: Request) -> Lifecycle:
    """This part of the request's lifecycle (web/lifecycle.py), built on its first use in a request that writes."""
    return _immutable(request)


def repository_deletion_guard(request: Request) -> Any:
    """For domain.repository_deletion: refuses to delete a repository that holds an immutable tag."""

    def guard(name: RepositoryName) -> None:
        store = SqlTagRuleStore(request.dbsession)
        _immutable(request).refuse_repository_deletion(name, lambda: store.tag_names(name.value))

    return guard


def _service(request: Request) -> RuleService:
    return RuleService(SqlTagRuleStore(request.dbsession), request.access, request.registry.stevedore.clock)


def _namespace(request: Request, account: Account) -> str:
    """The route's namespace, if it exists and the caller may see it; else the namespaces' 404 page."""
    return _visible(request, account, _management(request))


def _field(request: Request, key: str) -> str:
    return str(request.POST.get(key, "")).strip()[: MAX_FIELD + 1]


@view_config(route_name="ui.namespace_rules", request_method="GET", renderer=TEMPLATE)
def rules_page(request: Request) -> dict[str, Any]:
    account = holder(request)
    return _page(request, account, _namespace(request, account))


@view_config(route_name="ui.namespace_rules", request_method="POST", renderer=TEMPLATE)
def add_rule(request: Request) -> Any:
    account = holder(request)
    namespace = _namespace(request, account)
    form = RuleForm(
        kind=_field(request, "kind"),
        pattern=_field(request, "pattern"),
        repository=_field(request, "repository"),
        keep_newest=_field(request, "keep_newest"),
        keep_days=_field(request, "keep_days"),
        untagged_days=_field(request, "untagged_days"),
    )
    try:
        rule = _service(request).add(account, namespace, form)
    except Denied as exc:
        raise Denied(sentence(exc.message)) from None
    except InvalidInput as exc:
        refused(request, 400)
        return _page(request, account, namespace, form=form, error=sentence(exc.message))
    request.audit.record(AuditAction.RULE_ADDED, namespace=namespace, target=rule.scope, detail=rule.describe())
    request.session.flash(f"Rule added: {rule.describe()}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace_rules", namespace=namespace))


@view_config(route_name="ui.namespace_rule_remove", request_method="POST")
def remove_rule(request: Request) -> Response:
    account = holder(request)
    namespace = _namespace(request, account)
    text = request.matchdict["rule_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPNotFound()
    try:
        rule = _service(request).remove(account, namespace, int(text))
    except Denied as exc:
        raise Denied(sentence(exc.message)) from None
    except RuleUnknown as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.audit.record(AuditAction.RULE_REMOVED, namespace=namespace, target=rule.scope, detail=rule.describe())
        request.session.flash(f"Rule removed: {rule.describe()}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.namespace_rules", namespace=namespace))


def _page(
    request: Request,
    account: Account,
    namespace: str,
    *,
    form: RuleForm | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    rules: list[TagRule] = SqlTagRuleStore(request.dbsession).rules_of(namespace)
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return {
        "namespace": namespace,
        "immutable": [rule for rule in rules if rule.kind is RuleKind.IMMUTABLE],
        "retention": [rule for rule in rules if rule.kind is RuleKind.RETENTION],
        "may_manage": may_manage_namespace(request.access, account, namespace),
        "form": form or RuleForm(kind=RuleKind.IMMUTABLE.value, pattern=""),
        "error": error,
        "kinds": list(RuleKind),
        "when": when,
        "max_pattern": MAX_PATTERN_LENGTH,
        "max_days": MAX_DAYS,
        "max_newest": MAX_KEEP_NEWEST,
        "tag_history_days": request.registry.stevedore.settings.tag_history_days,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in queues else [],
        "failed": session.pop_flash(FLASH_ERROR) if FLASH_ERROR in queues else [],
    }

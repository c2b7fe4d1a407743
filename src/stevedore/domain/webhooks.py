"""Domain layer: webhooks — what a namespace's admins register, what is sent (an envelope close to CNCF Distribution's
notifications, signed with the webhook's secret), when a failed delivery is tried again, and which targets may be
called at all (no loopback, private, link-local... address unless a setting allows its network).

Deliveries go through an outbox: the lifecycle part (web/ui/webhooks.py) writes one row per webhook and event in the
push's own transaction, and a deliverer (adapters/webhook_delivery.py) claims due rows and sends them. So a push that
rolls back sends nothing, a committed one is never lost, and delivery is at least once: a process that dies after the
receiver answered but before it recorded so sends that event again later, with the same event id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from stevedore.domain.access import Access
from stevedore.domain.errors import Denied, InvalidInput, NotFound
from stevedore.domain.lifecycle import EventAction, ManifestEvent
from stevedore.domain.model import Account
from stevedore.domain.namespaces import may_manage_namespace, validate_namespace
from stevedore.domain.ports import Clock

# What receivers get (Distribution's notification media type) and the headers that let them check it.
CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Stevedore-Signature"  # sha256=<hex HMAC-SHA256 of the body, keyed with the secret>
TIMESTAMP_HEADER = "X-Stevedore-Timestamp"  # when this attempt was sent, Unix seconds
EVENT_ID_HEADER = "X-Stevedore-Event-Id"  # the event's id, as in the body: the same on every retry
DELIVERY_ID_HEADER = "X-Stevedore-Delivery"  # the outbox row's id
USER_AGENT = "Stevedore-Webhooks/1"

# The actions a webhook may subscribe to (pulls are not sent: one per layer GET would flood the outbox).
SUBSCRIBABLE = (EventAction.PUSH, EventAction.DELETE)
MAX_WEBHOOKS_PER_NAMESPACE = 20  # bounds the rows one push writes
MAX_URL_LENGTH = 2000
MIN_SECRET_LENGTH, MAX_SECRET_LENGTH = 16, 256

# Seconds to wait after the 1st, 2nd... failed attempt; after the last one the delivery has failed for good
# (about 21 hours after the event). Each wait is stretched or shrunk by up to JITTER, so receivers that came back up
# are not hit by every retry at once.
RETRY_SCHEDULE = (10, 60, 300, 1800, 7200, 21600, 43200)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.2


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"  # a 2xx answer
    FAILED = "failed"  # MAX_ATTEMPTS tried, or the target refused for good


@dataclass(frozen=True)
class Webhook:
    namespace: str
    url: str
    secret: str
    events: frozenset[EventAction]
    enabled: bool
    created_at: datetime
    created_by: str | None
    id: int | None = None

    def wants(self, action: EventAction) -> bool:
        return self.enabled and action in self.events

    @property
    def events_text(self) -> str:
        return ", ".join(a.value for a in SUBSCRIBABLE if a in self.events)

    @property
    def redacted_url(self) -> str:
        return redacted_url(self.url)

    @property
    def shown_url(self) -> str:
        return shown_url(self.url)


@dataclass(frozen=True)
class Delivery:
    """A row of the outbox, as the delivery log shows it (never the payload's secret: it has none)."""

    id: int
    webhook_id: int
    event_id: str
    action: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    repository: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """A delivery to write: the event, already in its envelope, for one webhook."""

    webhook_id: int
    event_id: str
    action: str
    payload: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery one deliverer holds (until `claimed_until`; `claim` names this holding, so that a result
    recorded after the lease ran out, when another deliverer may hold it, changes nothing)."""

    id: int
    claim: str
    url: str
    secret: str
    payload: str
    event_id: str
    attempts: int  # made before this one
    webhook_id: int


# --- the envelope ----------------------------------------------------------------------------------------------------
def envelope(
    event: ManifestEvent, *, event_id: str, registry_url: str, request: dict[str, str] | None = None
) -> dict[str, Any]:
    """Distribution's notification envelope for one event: `{"events": [{id, timestamp, action, target, request,
    actor, source}]}`. `registry_url`: how clients reach the registry (the public URL), which names the manifest.
    Fields the event does not know (a deletion's media type and size) are left out, as Distribution does."""
    repository = event.repository.value
    target: dict[str, Any] = {"repository": repository, "digest": str(event.digest)}
    if event.media_type is not None:
        target["mediaType"] = event.media_type
    if event.size is not None:
        target["size"] = event.size
        target["length"] = event.size
    base = registry_url.rstrip("/")
    target["url"] = f"{base}/v2/{repository}/manifests/{event.digest}"
    if event.tag is not None:
        target["tag"] = event.tag
    host = urlsplit(base).netloc
    return {
        "events": [
            {
                "id": event_id,
                "timestamp": event.at.isoformat().replace("+00:00", "Z"),
                "action": event.action.value,
                "target": target,
                "request": {"host": host, **(request or {})},
                "actor": {"name": event.actor} if event.actor else {},
                "source": {"addr": host, "name": "stevedore"},
            }
        ]
    }


def encode(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def new_event_id() -> str:
    return secrets.token_hex(16)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body keyed with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: compare the header with its own signature of the raw body, in constant time."""
    return hmac.compare_digest(sign(secret, body).encode(), (header or "").strip().encode())


def headers_for(delivery_id: int, event_id: str, secret: str, body: bytes, now: datetime) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, body),
        TIMESTAMP_HEADER: str(int(now.timestamp())),
        EVENT_ID_HEADER: event_id,
        DELIVERY_ID_HEADER: str(delivery_id),
    }


# --- retries ---------------------------------------------------------------------------------------------------------
def retry_delay(attempts_made: int, rng: random.Random | None = None) -> timedelta | None:
    """How long to wait after `attempts_made` failed attempts (1 after the first), with jitter; None: give up."""
    if attempts_made < 1 or attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE[attempts_made - 1]
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=base * spread)


# --- which targets may be called -------------------------------------------------------------------------------------
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(InvalidInput):
    """A webhook URL that may not be called: not http(s), or its host resolves to an address not allowed. `message`
    is for the caller (a namespace admin: it never names the address a name resolves to, which would map internal
    DNS); `detail`, when set, is the full reason, for the server's log only."""


class AddressPolicy:
    """Which addresses a webhook may connect to: public ones only (what `is_global` says, and no multicast),
    unless inside one of `allowed` (CIDRs from `stevedore.webhook_allowed_networks`). An IPv6 address that carries
    an IPv4 one (mapped `::ffff:a.b.c.d`, NAT64, 6to4, Teredo) is judged by that IPv4 address too."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(text, strict=False) for text in allowed)

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why `address` may not be called, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d, on the wire and for the policy
                candidates = [ip.ipv4_mapped]
            else:
                embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
                if ip in _NAT64:
                    embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
                candidates += [v4 for v4 in embedded if v4 is not None]
        for candidate in candidates:
            if any(candidate in network for network in self.allowed):
                continue
            kind = _restricted_kind(candidate)
            if kind is not None:
                shown = f"{ip} ({candidate})" if candidate != ip else str(ip)
                article = "an" if kind[0] in "aeiou" else "a"
                return f"{shown} is {article} {kind} address"
        return None


def _restricted_kind(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # a name, or an address without brackets
    port: int
    path: str  # with the query


def parse_target(url: str) -> Target:
    """A webhook URL: http or https, a host, no user name or password in it (the secret is the credential)."""
    text = (url or "").strip()
    if not text:
        raise InvalidInput("the URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidInput(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise InvalidInput("the URL holds spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidInput(f"the URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("a webhook URL starts with http:// or https://")
    if not host:
        raise InvalidInput("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("the URL may not hold a user name or password: receivers check the signature instead")
    if parts.fragment:
        raise InvalidInput("the URL may not have a fragment (#...)")
    _check_host(host)
    if not (parts.path.isascii() and parts.query.isascii()):
        # http.client sends the request line as ASCII: anything else would fail at every delivery attempt.
        raise InvalidInput("the URL's path and query may only hold ASCII characters: percent-encode the others")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(text, scheme, host, port or (443 if scheme == "https" else 80), path)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_host(host: str) -> None:
    """A host the resolver can take: an address, or a name whose labels (IDNA-encoded) are 1 to 63 characters, 253
    in all. The idna codec refuses the rest with UnicodeError, which would otherwise reach the caller of getaddrinfo."""
    if _is_address(host):
        return
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        raise InvalidInput("the URL's host is not a valid name (an empty label, or one over 63 characters)") from None
    if len(encoded.rstrip(b".")) > 253:
        raise InvalidInput("the URL's host name is longer than 253 characters")


def redacted_url(url: str) -> str:
    """`scheme://host[:port]/…`: a URL as the audit log and messages show it. A webhook URL may carry a secret in its
    path or query (Slack's and Discord's do), so only where it goes is shown; the database keeps it whole."""
    parts = urlsplit(url)
    rest = "/…" if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{rest}"


SHOWN_SEGMENT_LENGTH = 16  # longer than this, a path's first segment may well be a token


def shown_url(url: str) -> str:
    """A URL as the pages list it: scheme, host and the path's first segment when it is short (`/services/…` tells
    Slack hooks apart without showing the token after it); never the query."""
    parts = urlsplit(url)
    first, _, more = parts.path.lstrip("/").partition("/")
    if not first or len(first) > SHOWN_SEGMENT_LENGTH:
        return redacted_url(url)
    tail = "/…" if more or parts.query else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/{first}{tail}"


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (an address resolves to itself). Raises OSError when it does not."""
        ...


def checked_addresses(target: Target, resolver: Resolver, policy: AddressPolicy) -> list[str]:
    """The addresses to connect to: all that `target.host` resolves to, each allowed by the policy; TargetRefused
    when one is not (a name that also resolves to a private address is refused whole: the caller could not know which
    one a connection would use) or the name does not resolve."""
    try:
        addresses = resolver.resolve(target.host, target.port)
    except OSError as exc:
        raise TargetRefused(f"the host {target.host} does not resolve ({exc.strerror or exc})") from None
    except ValueError:  # UnicodeError: a name the idna codec refuses (parse_target refuses them first)
        raise TargetRefused(f"the host {target.host} is not a valid name") from None
    if not addresses:
        raise TargetRefused(f"the host {target.host} does not resolve")
    literal = _is_address(target.host)
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            allowed = (
                "webhooks may only call public addresses "
                "(stevedore.webhook_allowed_networks lists the networks allowed besides)"
            )
            detail = f"the host {target.host} resolves to {why}"
            if literal:  # the caller wrote the address: saying what it is tells them nothing new
                raise TargetRefused(f"{why}: {allowed}", detail)
            raise TargetRefused(
                f"the host {target.host} resolves to a non-public address (loopback, private, link-local…): " + allowed,
                detail,
            )
    return list(dict.fromkeys(addresses))


# --- the pages' use cases --------------------------------------------------------------------------------------------
class WebhookStore(Protocol):
    """Webhooks and their outbox, in the caller's unit of work."""

    def add(self, webhook: Webhook) -> Webhook: ...

    def of_namespace(self, namespace: str) -> list[Webhook]: ...

    def get(self, namespace: str, webhook_id: int) -> Webhook | None: ...

    def set_enabled(self, webhook_id: int, enabled: bool) -> None: ...

    def delete(self, webhook_id: int) -> None: ...

    def enqueue(self, entries: Sequence[OutboxEntry], now: datetime) -> None: ...

    def deliveries(self, webhook_id: int, limit: int) -> list[Delivery]: ...

    def redeliver(self, webhook_id: int, delivery_id: int, now: datetime) -> bool:
        """A failed delivery of this webhook becomes pending again, due now, its attempts counted from zero."""
        ...


class WebhookUnknown(NotFound):
    pass


@dataclass(frozen=True)
class WebhookForm:
    url: str
    events: frozenset[str]
    secret: str  # empty: one is generated


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str  # shown once


class WebhookService:
    """What a namespace's admins (and the installation's administrators) do on the webhooks page."""

    def __init__(
        self, store: WebhookStore, access: Access, clock: Clock, resolver: Resolver, policy: AddressPolicy
    ) -> None:
        self.store = store
        self.access = access
        self.clock = clock
        self.resolver = resolver
        self.policy = policy

    def authorize(self, caller: Account | None, namespace: str) -> str:
        name = validate_namespace(namespace)
        if not may_manage_namespace(self.access, caller, name):
            raise Denied(f"only the admins of {name} may manage its webhooks")
        return name

    def webhooks(self, caller: Account, namespace: str) -> list[Webhook]:
        return self.store.of_namespace(self.authorize(caller, namespace))

    def create(self, caller: Account, namespace: str, form: WebhookForm) -> CreatedWebhook:
        name = self.authorize(caller, namespace)
        target = parse_target(form.url)
        unknown = form.events - {a.value for a in SUBSCRIBABLE}
        if unknown:
            raise InvalidInput(f"unknown events: {', '.join(sorted(unknown))[:100]}")
        if not form.events:
            raise InvalidInput("choose at least one event (push, delete)")
        secret = form.secret.strip()
        if secret and not (
            MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH and secret.isascii() and secret.isprintable()
        ):
            raise InvalidInput(
                f"a secret is {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} printable ASCII characters "
                "(or leave it empty for a generated one)"
            )
        if len(self.store.of_namespace(name)) >= MAX_WEBHOOKS_PER_NAMESPACE:
            raise InvalidInput(f"a namespace has {MAX_WEBHOOKS_PER_NAMESPACE} webhooks at most")
        checked_addresses(target, self.resolver, self.policy)
        secret = secret or secrets.token_urlsafe(32)
        webhook = self.store.add(
            Webhook(
                namespace=name,
                url=target.url,
                secret=secret,
                events=frozenset(EventAction(e) for e in form.events),
                enabled=True,
                created_at=self.clock.now(),
                created_by=caller.username,
            )
        )
        return CreatedWebhook(webhook, secret)

    def _own(self, caller: Account, namespace: str, webhook_id: int) -> Webhook:
        name = self.authorize(caller, namespace)
        webhook = self.store.get(name, webhook_id)
        if webhook is None:
            raise WebhookUnknown(f"{name} has no webhook {webhook_id}")
        return webhook

    def get(self, caller: Account, namespace: str, webhook_id: int) -> Webhook:
        return self._own(caller, namespace, webhook_id)

    def set_enabled(self, caller: Account, namespace: str, webhook_id: int, enabled: bool) -> Webhook:
        webhook = self._own(caller, namespace, webhook_id)
        self.store.set_enabled(webhook_id, enabled)
        return webhook

    def delete(self, caller: Account, namespace: str, webhook_id: int) -> Webhook:
        webhook = self._own(caller, namespace, webhook_id)
        self.store.delete(webhook_id)
        return webhook

    def deliveries(self, caller: Account, namespace: str, webhook_id: int, limit: int = 50) -> list[Delivery]:
        self._own(caller, namespace, webhook_id)
        return self.store.deliveries(webhook_id, limit)

    def redeliver(self, caller: Account, namespace: str, webhook_id: int, delivery_id: int) -> Webhook:
        webhook = self._own(caller, namespace, webhook_id)
        if not self.store.redeliver(webhook_id, delivery_id, self.clock.now()):
            raise WebhookUnknown(f"delivery {delivery_id} is not a failed delivery of this webhook")
        return webhook

    def ping(self, caller: Account, namespace: str, webhook_id: int, registry_url: str) -> str:
        """A test event (`action` "ping", no target) queued for this webhook alone; its event id."""
        webhook = self._own(caller, namespace, webhook_id)
        event_id = new_event_id()
        now = self.clock.now()
        document = {
            "events": [
                {
                    "id": event_id,
                    "timestamp": now.isoformat().replace("+00:00", "Z"),
                    "action": "ping",
                    "target": {"repository": webhook.namespace},
                    "actor": {"name": caller.username},
                    "source": {"addr": urlsplit(registry_url).netloc, "name": "stevedore"},
                }
            ]
        }
        assert webhook.id is not None
        self.store.enqueue([OutboxEntry(webhook.id, event_id, "ping", encode(document))], now)
        return event_id


def outbox_entries(
    webhooks: Sequence[Webhook], events: Sequence[ManifestEvent], registry_url: str, request: dict[str, str]
) -> list[OutboxEntry]:
    """One entry per webhook and event it subscribes to; an event keeps one id whichever webhook it goes to."""
    entries = []
    for event in events:
        wanting = [w for w in webhooks if w.wants(event.action) and w.id is not None]
        if not wanting:
            continue
        event_id = new_event_id()
        payload = encode(envelope(event, event_id=event_id, registry_url=registry_url, request=request))
        entries += [OutboxEntry(w.id, event_id, event.action.value, payload) for w in wanting if w.id is not None]
    return entries

"""domain.webhooks: the envelope, its signature, the retry schedule, which targets may be called, and the page's use
cases over in-memory fakes."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stevedore.domain.access import Access, AccessRules
from stevedore.domain.errors import Denied, InvalidInput
from stevedore.domain.lifecycle import EventAction, ManifestEvent
from stevedore.domain.model import Account, Digest, RepositoryName
from stevedore.domain.namespaces import AccessModel, Namespace, Right
from stevedore.domain.webhooks import (
    CONTENT_TYPE,
    EVENT_ID_HEADER,
    MAX_ATTEMPTS,
    MAX_WEBHOOKS_PER_NAMESPACE,
    RETRY_SCHEDULE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AddressPolicy,
    Delivery,
    OutboxEntry,
    Target,
    TargetRefused,
    Webhook,
    WebhookForm,
    WebhookService,
    WebhookUnknown,
    checked_addresses,
    envelope,
    headers_for,
    outbox_entries,
    parse_target,
    redacted_url,
    retry_delay,
    shown_url,
    sign,
    verify,
)
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, InMemoryRegistryStore

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
DIGEST = Digest.parse("sha256:" + "ab" * 32)
REPO = RepositoryName.parse("team/app")


def pushed(tag: str | None = "v1", action: EventAction = EventAction.PUSH) -> ManifestEvent:
    media, size = ("application/vnd.oci.image.manifest.v1+json", 1234) if action is EventAction.PUSH else (None, None)
    return ManifestEvent(action, REPO, DIGEST, media, size, tag, "ada", NOW)


# --- the envelope and its signature -----------------------------------------------------------------------------------
def test_push_envelope_has_distributions_fields():
    document = envelope(
        pushed(), event_id="e1", registry_url="https://registry.example/", request={"method": "PUT", "useragent": "d"}
    )
    [event] = document["events"]
    assert event["id"] == "e1"
    assert event["action"] == "push"
    assert event["timestamp"] == "2026-03-04T05:06:07Z"
    assert event["target"] == {
        "repository": "team/app",
        "digest": str(DIGEST),
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 1234,
        "length": 1234,
        "url": f"https://registry.example/v2/team/app/manifests/{DIGEST}",
        "tag": "v1",
    }
    assert event["request"] == {"host": "registry.example", "method": "PUT", "useragent": "d"}
    assert event["actor"] == {"name": "ada"}
    assert event["source"]["addr"] == "registry.example"


def test_delete_envelope_leaves_out_what_a_deletion_does_not_know():
    [event] = envelope(pushed(None, EventAction.DELETE), event_id="e", registry_url="http://r")["events"]
    assert event["action"] == "delete"
    assert "mediaType" not in event["target"] and "size" not in event["target"] and "tag" not in event["target"]
    assert event["target"]["digest"] == str(DIGEST)


def test_signature_is_the_hmac_sha256_of_the_body():
    body = b'{"events":[]}'
    expected = hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret-s3cret-s3cret", body) == f"sha256={expected}"
    assert verify("s3cret-s3cret-s3cret", body, f"sha256={expected}")
    assert not verify("s3cret-s3cret-s3cret", body + b" ", f"sha256={expected}")
    assert not verify("another-secret-here", body, f"sha256={expected}")
    assert not verify("s3cret-s3cret-s3cret", body, "")


def test_headers_carry_type_signature_timestamp_and_event_id():
    body = b"{}"
    headers = headers_for(7, "evt", "k" * 20, body, NOW)
    assert headers["Content-Type"] == CONTENT_TYPE == "application/vnd.docker.distribution.events.v1+json"
    assert headers[SIGNATURE_HEADER] == sign("k" * 20, body)
    assert headers[TIMESTAMP_HEADER] == str(int(NOW.timestamp()))
    assert headers[EVENT_ID_HEADER] == "evt"


# --- retries ----------------------------------------------------------------------------------------------------------
class Extreme(random.Random):
    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return a if self.end == "low" else b


def test_retry_schedule_grows_and_ends():
    delays = [retry_delay(n, Extreme("low")) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[-1] is None  # the last attempt failed: no more
    seconds = [d.total_seconds() for d in delays[:-1] if d is not None]
    assert len(seconds) == len(RETRY_SCHEDULE) == MAX_ATTEMPTS - 1
    assert seconds == sorted(seconds) and seconds[0] == pytest.approx(8.0) and seconds[1] == pytest.approx(48.0)
    assert retry_delay(0) is None


def test_retry_delays_are_jittered_within_bounds():
    rng = random.Random(42)
    found = {retry_delay(1, rng).total_seconds() for _ in range(50)}  # type: ignore[union-attr]
    assert len(found) > 40 and min(found) >= 8.0 and max(found) <= 12.0
    assert retry_delay(2, Extreme("high")).total_seconds() == pytest.approx(72.0)  # type: ignore[union-attr]


# --- which targets may be called --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.3.4.5",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "100.64.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    ],
)
def test_restricted_addresses_are_refused(address):
    assert AddressPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert AddressPolicy().refusal(address) is None


def test_allowed_networks_open_their_addresses_only():
    policy = AddressPolicy(["127.0.0.0/8", "fd00:1::/64"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the mapped form of an allowed address
    assert policy.refusal("fd00:1::5") is None
    assert policy.refusal("::1") is not None
    assert policy.refusal("10.0.0.1") is not None
    assert policy.refusal("fd00:2::5") is not None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "http://",
        "http://user:pass@example.com/",
        "http://example.com/a b",
        "http://example.com:99999/",
        "http://example.com/#x",
        "https://example.com/" + "a" * 2000,
        "https://example.com/ü",  # http.client sends the path as ASCII: refused at save, not at every attempt
        "https://example.com/in?name=ü",
        "http://a..b/hook",  # labels the idna codec refuses: not a 500 from getaddrinfo's UnicodeError
        "http://.example.com/",
        "http://" + "a" * 64 + ".example.com/hook",
        "http://" + ".".join(["a" * 60] * 5) + "/",  # 304 characters
    ],
)
def test_bad_urls_are_refused(url):
    with pytest.raises(InvalidInput):
        parse_target(url)


def test_urls_parse_into_host_port_and_path():
    target = parse_target("https://hooks.example.com/a/b?x=1")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "hooks.example.com", 443, "/a/b?x=1")
    assert parse_target("http://[2606:4700::1]:8080").host == "2606:4700::1"
    assert parse_target("http://[2606:4700::1]:8080").path == "/"
    assert parse_target("https://bücher.example/a%C3%BC?x=%C3%BC").path == "/a%C3%BC?x=%C3%BC"  # IDN host, encoded path
    assert parse_target("http://hooks.example./in").host == "hooks.example."


def test_urls_are_shown_without_what_may_be_a_secret():
    slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    assert redacted_url(slack) == "https://hooks.slack.com/…"
    assert shown_url(slack) == "https://hooks.slack.com/services/…"
    discord = "https://discord.com/api/webhooks/123/tok-en"
    assert shown_url(discord) == "https://discord.com/api/…"
    assert redacted_url("http://[2606:4700::1]:8080/in?token=x") == "http://[2606:4700::1]:8080/…"
    assert shown_url("http://h.example:81/in?token=x") == "http://h.example:81/in/…"
    assert shown_url("http://h.example/in") == "http://h.example/in"
    assert (
        shown_url("http://h.example/" + "t" * 17)
        == redacted_url("http://h.example/" + "t" * 17)
        == "http://h.example/…"
    )
    assert shown_url("http://h.example") == redacted_url("http://h.example/") == "http://h.example/"
    hooked = Webhook("team", slack, "s" * 20, frozenset({EventAction.PUSH}), True, NOW, "ada", 1)
    assert (hooked.redacted_url, hooked.shown_url) == (redacted_url(slack), shown_url(slack))


class StaticResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError(-2, "Name or service not known")
        return self.answers[host]


def test_a_name_resolving_to_any_restricted_address_is_refused():
    resolver = StaticResolver({"good.example": ["93.184.215.14"], "mixed.example": ["93.184.215.14", "10.0.0.7"]})
    assert checked_addresses(parse_target("http://good.example/"), resolver, AddressPolicy()) == ["93.184.215.14"]
    with pytest.raises(TargetRefused, match="resolves to a non-public address") as refused:
        checked_addresses(parse_target("http://mixed.example/"), resolver, AddressPolicy())
    # The caller is not told which address (that would map internal DNS); the server's log is.
    assert "10.0.0.7" not in refused.value.message
    assert refused.value.detail == "the host mixed.example resolves to 10.0.0.7 is a private address"
    with pytest.raises(TargetRefused, match="does not resolve"):
        checked_addresses(parse_target("http://nowhere.example/"), resolver, AddressPolicy())
    with pytest.raises(TargetRefused, match="loopback"):
        checked_addresses(parse_target("http://[::1]/"), StaticResolver({"::1": ["::1"]}), AddressPolicy())


class IdnaRefusing:
    def resolve(self, host: str, port: int) -> list[str]:
        return socket.getaddrinfo("a..b", port)  # type: ignore[return-value]  # raises UnicodeError, not OSError


def test_a_name_the_resolver_cannot_encode_is_refused_not_raised():
    target = Target("http://a..b/", "http", "a..b", 80, "/")  # as parse_target no longer makes it
    with pytest.raises(TargetRefused, match="not a valid name"):
        checked_addresses(target, IdnaRefusing(), AddressPolicy())


# --- the outbox -------------------------------------------------------------------------------------------------------
def hook(webhook_id: int, *events: EventAction, enabled: bool = True) -> Webhook:
    url = f"https://h{webhook_id}.example/"
    return Webhook("team", url, "s" * 20, frozenset(events), enabled, NOW, "ada", webhook_id)


def test_outbox_has_one_entry_per_subscribed_webhook_and_event_sharing_the_event_id():
    hooks = [hook(1, EventAction.PUSH), hook(2, EventAction.PUSH, EventAction.DELETE), hook(3, EventAction.DELETE)]
    hooks.append(hook(4, EventAction.PUSH, enabled=False))
    entries = outbox_entries(hooks, [pushed("v1"), pushed(None, EventAction.DELETE)], "http://r", {})
    by_action = {(e.webhook_id, e.action) for e in entries}
    assert by_action == {(1, "push"), (2, "push"), (2, "delete"), (3, "delete")}
    push_ids = {e.event_id for e in entries if e.action == "push"}
    assert len(push_ids) == 1
    payload = json.loads(next(e.payload for e in entries if e.action == "push"))
    assert payload["events"][0]["id"] in push_ids and payload["events"][0]["target"]["tag"] == "v1"


# --- the page's use cases ---------------------------------------------------------------------------------------------
class InMemoryWebhookStore:
    def __init__(self) -> None:
        self.hooks: dict[int, Webhook] = {}
        self.outbox: list[OutboxEntry] = []
        self.failed: set[int] = set()

    def add(self, webhook: Webhook) -> Webhook:
        stored = replace(webhook, id=len(self.hooks) + 1)
        self.hooks[stored.id] = stored  # type: ignore[index]
        return stored

    def of_namespace(self, namespace: str) -> list[Webhook]:
        return [w for w in self.hooks.values() if w.namespace == namespace]

    def get(self, namespace: str, webhook_id: int) -> Webhook | None:
        found = self.hooks.get(webhook_id)
        return found if found is not None and found.namespace == namespace else None

    def set_enabled(self, webhook_id: int, enabled: bool) -> None:
        self.hooks[webhook_id] = replace(self.hooks[webhook_id], enabled=enabled)

    def delete(self, webhook_id: int) -> None:
        del self.hooks[webhook_id]

    def enqueue(self, entries, now) -> None:
        self.outbox += entries

    def deliveries(self, webhook_id: int, limit: int) -> list[Delivery]:
        return []

    def redeliver(self, webhook_id: int, delivery_id: int, now) -> bool:
        return delivery_id in self.failed


class World:
    def __init__(self) -> None:
        self.accounts = InMemoryAccountStore()
        self.namespaces = InMemoryNamespaceStore(self.accounts, InMemoryRegistryStore())
        self.store = InMemoryWebhookStore()
        self.resolver = StaticResolver({"hooks.example": ["93.184.215.14"], "inside.example": ["10.1.2.3"]})
        self.namespaces.add(Namespace("team", NOW))

    def service(self, allowed: tuple[str, ...] = ()) -> WebhookService:
        access = Access(self.namespaces, AccessRules(AccessModel.DEFAULT))
        return WebhookService(self.store, access, FixedClock(NOW), self.resolver, AddressPolicy(allowed))

    def user(self, name: str, right: Right | None = None, *, admin: bool = False) -> Account:
        account = self.accounts.add(Account(None, name, None, "x", is_admin=admin))
        if right is not None:
            assert account.id is not None
            self.namespaces.set_member("team", account.id, right)
        return account


FORM = WebhookForm(url="https://hooks.example/in", events=frozenset({"push", "delete"}), secret="")


def test_only_the_namespaces_admins_and_administrators_manage_webhooks():
    world = World()
    service = world.service()
    for account in (world.user("pusher", Right.PUSH), world.user("puller", Right.PULL), world.user("stranger")):
        with pytest.raises(Denied):
            service.create(account, "team", FORM)
        with pytest.raises(Denied):
            service.webhooks(account, "team")
    assert service.create(world.user("boss", Right.ADMIN), "team", FORM).webhook.id == 1
    assert service.create(world.user("root", admin=True), "team", FORM).webhook.id == 2
    disabled = replace(world.user("gone", Right.ADMIN), is_active=False)
    with pytest.raises(Denied):
        service.create(disabled, "team", FORM)


def test_a_generated_secret_is_returned_once_and_a_chosen_one_is_kept():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    created = world.service().create(boss, "team", FORM)
    assert len(created.secret) >= 32 and created.webhook.secret == created.secret
    chosen = world.service().create(boss, "team", replace(FORM, secret="my own long secret!"))
    assert chosen.webhook.secret == "my own long secret!"
    with pytest.raises(InvalidInput, match="16 to 256"):
        world.service().create(boss, "team", replace(FORM, secret="short"))


def test_a_private_target_is_refused_at_save_unless_its_network_is_allowed():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    inside = replace(FORM, url="http://inside.example/hook")
    with pytest.raises(TargetRefused, match="resolves to a non-public address") as refused:
        world.service().create(boss, "team", inside)
    assert "10.1.2.3" not in refused.value.message and "10.1.2.3 is a private address" in str(refused.value.detail)
    with pytest.raises(TargetRefused):
        world.service().create(boss, "team", replace(FORM, url="http://169.254.169.254/latest"))
    assert world.store.hooks == {}
    assert world.service(("10.1.0.0/16",)).create(boss, "team", inside).webhook.url == "http://inside.example/hook"


def test_events_must_be_known_and_at_least_one():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    with pytest.raises(InvalidInput, match="at least one"):
        world.service().create(boss, "team", replace(FORM, events=frozenset()))
    with pytest.raises(InvalidInput, match="unknown events"):
        world.service().create(boss, "team", replace(FORM, events=frozenset({"push", "pull"})))


def test_a_namespace_has_a_bounded_number_of_webhooks():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    for _ in range(MAX_WEBHOOKS_PER_NAMESPACE):
        world.service().create(boss, "team", FORM)
    with pytest.raises(InvalidInput, match="at most"):
        world.service().create(boss, "team", FORM)


def test_webhooks_of_another_namespace_are_unknown_here():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    world.store.add(replace(hook(1, EventAction.PUSH), namespace="other"))
    with pytest.raises(WebhookUnknown):
        world.service().delete(boss, "team", 1)
    with pytest.raises(WebhookUnknown):
        world.service().set_enabled(boss, "team", 1, False)
    assert 1 in world.store.hooks


def test_ping_queues_one_event_for_that_webhook():
    world = World()
    boss = world.user("boss", Right.ADMIN)
    created = world.service().create(boss, "team", FORM)
    event_id = world.service().ping(boss, "team", created.webhook.id or 0, "https://registry.example")
    [entry] = world.store.outbox
    assert entry.webhook_id == created.webhook.id and entry.event_id == event_id and entry.action == "ping"
    assert json.loads(entry.payload)["events"][0]["action"] == "ping"

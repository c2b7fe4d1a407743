"""A registry client that does exactly what a challenge says, standard library only.

It keeps one Authorization at a time. On a 401 it answers the challenge once: Basic with its credentials; Bearer
with a token from the challenge's realm for every scope the challenge names (`scope` is space separated, so a
mount's challenge can name the target and the source), then sends the same request again. That is the behaviour
the distribution token spec asks of clients; docker, which pre-requests a mount's source scope itself, never needs
the second scope from the registry.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="..",service="..",scope="a b"` -> ("bearer", {...}); quoted values may hold commas and spaces."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key, i = rest[i:eq].strip().lower(), eq + 1
        if rest[i : i + 1] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key], i = rest[i + 1 : end], end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key], i = rest[i:end].strip(), end
    return scheme.lower(), params


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the caller sees 3xx as they are
        return None


@dataclass
class ChallengeClient:
    url: str
    username: str
    password: str
    timeout: float = 60
    authorization: str | None = None
    exchanges: list[str] = field(default_factory=list)  # "METHOD path -> status", for assertion messages
    challenges: list[dict[str, str]] = field(default_factory=list)  # every challenge answered, in order
    token_requests: list[list[str]] = field(default_factory=list)  # the scopes of every token fetched

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._opener = urllib.request.build_opener(_NoRedirect)

    def describe(self) -> str:
        return "\n".join(self.exchanges)

    def _basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def _send(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Reply:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                reply = Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as error:
            reply = Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
        self.exchanges.append(f"{method} {url.removeprefix(self.url)} -> {reply.status}")
        return reply

    def fetch_token(self, realm: str, service: str, scopes: list[str]) -> str:
        """GET realm?service=&scope=..&scope=.. with Basic credentials (docker's token spec: one `scope` a scope)."""
        self.token_requests.append(list(scopes))
        query = urllib.parse.urlencode([("service", service), *(("scope", scope) for scope in scopes)])
        url = f"{realm}{'&' if '?' in realm else '?'}{query}"
        reply = self._send("GET", url, None, {"Authorization": self._basic()})
        assert reply.status == 200, f"token endpoint {realm}: {reply.status} {reply.body[:300]!r}"
        body = reply.json()
        return str(body.get("token") or body["access_token"])

    def _answer(self, challenge: str, scopes: list[str] | None = None) -> bool:
        """Set the Authorization a challenge asks for; False when it is no challenge this client can answer."""
        scheme, params = parse_challenge(challenge)
        self.challenges.append({"scheme": scheme, **params})
        if scheme == "basic":
            self.authorization = self._basic()
            return True
        if scheme == "bearer" and params.get("realm"):
            wanted = params.get("scope", "").split() if scopes is None else scopes
            self.authorization = "Bearer " + self.fetch_token(params["realm"], params.get("service", ""), wanted)
            return True
        return False

    def login(self, *scopes: str) -> None:
        """Ping /v2/ and hold credentials for exactly `scopes` (with Bearer): a client that asks no more than it
        knows it needs."""
        reply = self._send("GET", f"{self.url}/v2/", None, {})
        if reply.status == 401:
            assert self._answer(reply.headers.get("www-authenticate", ""), list(scopes)), reply.headers

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None) -> Reply:
        url = path if path.startswith("http") else self.url + path
        headers = dict(headers or {})
        if data is None and method in ("POST", "PUT", "PATCH"):
            data, headers["Content-Length"] = b"", "0"
        if self.authorization:
            headers["Authorization"] = self.authorization
        reply = self._send(method, url, data, headers)
        if reply.status != 401 or not self._answer(reply.headers.get("www-authenticate", "")):
            return reply
        headers["Authorization"] = self.authorization  # type: ignore[assignment]
        return self._send(method, url, data, headers)  # once: a second 401 is the answer

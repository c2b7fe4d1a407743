"""Web layer: waitress, as the ini's `[server:main] use = egg:stevedore-registry#waitress` runs it.

Plain waitress, with a few fixes for a registry that faces clients and the network:

- TLS on the plain port. docker and containerd try HTTPS first, even against a plain-HTTP registry on 127.0.0.0/8,
  and fall back to HTTP only when the TLS handshake fails. Waitress takes the TLS ClientHello for the start of an
  HTTP request line and waits for the rest, so every docker command stalled for its 10 s handshake timeout. Like Go's
  net/http, we answer a TLS record on a plain port with a 400 at once, and the client falls back.
- Bodies nobody asked for. Waitress receives a whole request body (spooling it to a temporary file past 512 KiB)
  before the app runs, so an anonymous 300 MiB PATCH would be written to disk only to be answered 401. Each request
  is looked at as soon as its headers are parsed: under /v2/, a body without any Authorization header is answered
  with the registry's 401, and a token request (/v2/token) whose body is chunked or larger than the app's form limit
  with 413. The body is never stored and the connection closes (see `PlainHttpChannel.handle_close`).
- Slow clients. A connection must send each request's headers within `header_timeout` seconds of being ready for
  them (opened, or its previous response sent), and a token form within the same time; otherwise it is closed.
  Waitress's own `channel_timeout` only closes a connection that sends nothing at all, which a client trickling one
  byte every few seconds never is. Bodies of other requests may be slow: `channel_timeout` bounds their silences.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import waitress
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import Error

from stevedore.web.registry.token import MAX_FORM_BYTES

log = logging.getLogger(__name__)
request_log = logging.getLogger("stevedore.requests")

_TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record, the first byte a TLS client sends
_REFUSAL = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"This server speaks plain HTTP; put a TLS-terminating proxy in front of it for HTTPS.\n"
)

DEFAULT_HEADER_TIMEOUT = 15.0
TOKEN_PATH = "/v2/token"
# After a refusal: read and drop what the client still sends for this long, or this much, before closing. Closing a
# socket with unread bytes makes the kernel send a reset, which can destroy the response before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# A Host header that may be copied into a challenge: a DNS name or an IP literal and a port, nothing that could end
# the quoted string.
_PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def is_registry_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


class RegistryRefusal(Error):  # type: ignore[misc]
    """A registry error answered by waitress itself (through its ErrorTask), in the app's JSON shape."""

    def __init__(
        self, status: int, reason: str, code: str, message: str, detail: Any, headers: list[tuple[str, str]]
    ) -> None:
        super().__init__(message)
        self.code = status
        self.reason = reason
        self.oci_code = code
        self.message = message
        self.detail = detail
        self.headers = headers

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json.dumps({"errors": [{"code": self.oci_code, "message": self.message, "detail": self.detail}]})
        headers = [
            ("Content-Type", "application/json"),
            ("Docker-Distribution-API-Version", "registry/2.0"),
            *self.headers,
        ]
        return f"{self.code} {self.reason}", headers, body.encode()


@dataclass(frozen=True)
class Guard:
    """What the runner checks before the app runs, and what it needs to answer like the app."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # 0: no limit
    public_url: str | None = None  # the app's stevedore.public_url
    service_name: str | None = None  # the app's stevedore.service_name
    url_scheme: str = "http"
    # Behind a trusted proxy the app builds its URL from X-Forwarded-*, which waitress applies later: do not guess.
    trust_host: bool = True

    def challenge(self, host: str) -> str | None:
        """The app's Bearer challenge (web/registry/challenge.py), or None when it cannot be built safely."""
        if self.public_url:
            base = self.public_url
        elif self.trust_host and _PLAIN_HOST.fullmatch(host):
            # As WebOb's host_url, which the app uses: the default port of the scheme is left out.
            name, port = (host, "") if host.endswith("]") or ":" not in host else host.rsplit(":", 1)
            default = (self.url_scheme, port) in (("http", "80"), ("https", "443"))
            base = f"{self.url_scheme}://{name}" + (f":{port}" if port and not default else "")
        else:
            return None
        service = self.service_name or urlsplit(base).netloc
        return f'Bearer realm="{base}/v2/token",service="{service}"'

    def refusal(self, request: HTTPRequestParser) -> RegistryRefusal | None:
        """The answer to a request whose headers are in and whose body is announced, or None to let it through."""
        path = request.path
        if path == TOKEN_PATH:
            if request.chunked or request.content_length > MAX_FORM_BYTES:
                # The same answer as the app's (web/registry/token.py), before the form is received.
                return RegistryRefusal(
                    413,
                    "Payload Too Large",
                    "SIZE_INVALID",
                    f"the token form is limited to {MAX_FORM_BYTES} bytes",
                    None,
                    [],
                )
            return None
        if is_registry_path(path) and "AUTHORIZATION" not in request.headers:
            challenge = self.challenge(request.headers.get("HOST", ""))
            return RegistryRefusal(
                401,
                "Unauthorized",
                "UNAUTHORIZED",
                "authentication required: log in to this registry",
                {},
                [("WWW-Authenticate", challenge)] if challenge else [],
            )
        return None


class GuardedRequestParser(HTTPRequestParser):  # type: ignore[misc]
    """Waitress's parser, which asks the channel's guard about each request once its headers are parsed."""

    completed: bool  # set by waitress's parser
    headers_finished: bool

    def __init__(self, adj: Any, channel: PlainHttpChannel) -> None:
        super().__init__(adj)
        self.channel = channel
        self.form_deadline = False  # a token form must arrive within the header timeout too

    @property
    def awaited(self) -> bool:
        """Still within what must arrive before the header timeout."""
        return not self.headers_finished or (self.form_deadline and not self.completed)

    def received(self, data: bytes) -> int:
        in_head = not self.headers_finished
        consumed = int(super().received(data))
        if in_head and self.headers_finished and not self.completed:  # headers in, a body announced, no error yet
            refusal = self.channel.guard.refusal(self)
            if refusal is not None:
                self.error = refusal
                self.completed = True
                self.expect_continue = False  # no "100 Continue": the client must not send the body
                self.channel.refused = True
                request_log.info(
                    "%s %s %s - 0.000s - (refused before its body)",
                    ascii(self.command)[1:-1],
                    ascii(self.path + (f"?{self.query}" if self.query else ""))[1:-1],  # no control characters
                    refusal.code,
                )
                return len(data)  # the rest of this read is body: dropped, as the connection will close
            self.form_deadline = self.path == TOKEN_PATH
        if not self.awaited:
            self.channel.waiting_since = None
        return consumed


class PlainHttpChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTP channel that turns TLS handshakes away at once, refuses unwanted bodies before they are received and
    closes connections that keep their request headers waiting."""

    guard = Guard()
    _first_data = True
    refused = False  # a request was refused at its headers: the connection ends after that answer
    waiting_since: float | None = None  # since when the next request (its headers) is awaited
    _in_write = False
    _linger_until: float | None = None
    _lingered = 0

    def parser_class(self, adj: Any) -> GuardedRequestParser:  # waitress calls self.parser_class(self.adj)
        return GuardedRequestParser(adj, self)

    def received(self, data: bytes) -> bool:
        if self._first_data and data:
            self._first_data = False
            if data[0] == _TLS_HANDSHAKE:
                try:
                    self.send(_REFUSAL)
                finally:
                    self.handle_close()
                return False
        return bool(super().received(data))

    def _awaiting_request(self) -> bool:
        if self.requests or self.total_outbufs_len:
            return False  # a request is being served, or its response sent
        request = self.request
        return request is None or bool(request.awaited)

    def readable(self) -> bool:
        # The event loop asks every channel at least once a second (asyncore_loop_timeout): the place for timers.
        now = time.monotonic()
        if self._linger_until is not None:
            if now < self._linger_until:
                return True
            self.will_close = True
            return False
        timeout = self.guard.header_timeout
        if timeout > 0 and self._awaiting_request():
            if self.waiting_since is None:
                self.waiting_since = now
            elif now - self.waiting_since > timeout:
                log.debug("closing a connection from %s: no complete request headers in %s s", self.addr, timeout)
                self.will_close = True
                return False
        return bool(super().readable())

    def handle_read(self) -> None:
        if self._linger_until is None:
            super().handle_read()
            return
        try:
            data = self.recv(256 * 1024)  # an end of stream or a reset closes the channel inside recv
        except OSError:
            self.handle_close()
            return
        self._lingered += len(data)
        if data and (self._lingered > LINGER_BYTES or time.monotonic() > self._linger_until):
            self.handle_close()

    def handle_write(self) -> None:
        self._in_write = True
        try:
            super().handle_write()
        finally:
            self._in_write = False

    def handle_close(self) -> None:
        if self.refused and self._in_write and self._linger_until is None and not self.total_outbufs_len:
            # The refusal is written. Half-close, so it and our FIN reach the client, and drop what it still sends
            # for a moment: an outright close with unread bytes would reset the connection under the answer.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self._linger_until = time.monotonic() + LINGER_SECONDS
                self.will_close = False
                self.close_when_flushed = False
                return
        super().handle_close()


def _app_settings(app: Any) -> tuple[str | None, str | None]:
    """The app's public URL and service name, when `app` is our Pyramid app (not wrapped in a filter)."""
    settings = getattr(getattr(getattr(app, "registry", None), "stevedore", None), "settings", None)
    return getattr(settings, "public_url", None), getattr(settings, "service_name", None)


def _raise_open_file_limit(connection_limit: int) -> None:
    """Each connection is a file descriptor (and a spooled body or a blob being sent may take one or two more): lift
    the soft limit towards the hard one, as Go does, so that accept() does not fail with EMFILE."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    wanted = 3 * connection_limit + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    if target < wanted:
        log.warning(
            "the open-file limit (%d) is low for connection_limit = %d: raise it (ulimit -n, systemd LimitNOFILE=) "
            "to %d or more, or lower connection_limit",
            target,
            connection_limit,
            wanted,
        )


def create_server(app: Any, **settings: Any) -> Any:
    header_timeout = float(settings.pop("header_timeout", DEFAULT_HEADER_TIMEOUT))
    # select() cannot watch a file descriptor numbered 1024 or more, which a few hundred connections reach.
    settings.setdefault("asyncore_use_poll", True)
    server = waitress.create_server(app, **settings)
    public_url, service_name = _app_settings(app)
    servers = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for candidate in servers:
        if isinstance(candidate, BaseWSGIServer):
            guard = Guard(
                header_timeout=header_timeout,
                public_url=public_url,
                service_name=service_name,
                url_scheme=candidate.adj.url_scheme,
                trust_host=not candidate.adj.trusted_proxy,
            )
            candidate.channel_class = type("PlainHttpChannel", (PlainHttpChannel,), {"guard": guard})
    _raise_open_file_limit(server.adj.connection_limit)
    return server


def serve_paste(app: Any, global_conf: dict[str, Any], **settings: Any) -> int:
    """The paste.server_runner entry point."""
    logging.basicConfig()
    try:
        server = create_server(app, **settings)
    except OSError as exc:
        log.error(
            "cannot listen on %s: %s (another server there? PORT=8080 make run picks another port)",
            settings.get("listen", "?"),
            exc.strerror or exc,
        )
        raise SystemExit(1) from exc
    server.print_listen("Serving on http://{}:{}")
    server.run()
    return 0

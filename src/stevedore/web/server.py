"""Web layer: waitress, as the ini's `[server:main] use = egg:stevedore-registry#waitress` runs it.

Plain waitress, with one fix for registry clients. docker and containerd try HTTPS first, even against a plain-HTTP
registry on 127.0.0.0/8, and fall back to HTTP only when the TLS handshake fails. Waitress takes the TLS ClientHello
for the start of an HTTP request line and waits for the rest, so every docker command stalled for its 10 s handshake
timeout. Like Go's net/http, we answer a TLS record on a plain port with a 400 at once, and the client falls back.
"""

from __future__ import annotations

import logging
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)

_TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record, the first byte a TLS client sends
_REFUSAL = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"This server speaks plain HTTP; put a TLS-terminating proxy in front of it for HTTPS.\n"
)


class PlainHttpChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTP channel that turns TLS handshakes away immediately instead of waiting for a request line."""

    _first_data = True

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


def create_server(app: Any, **settings: Any) -> Any:
    server = waitress.create_server(app, **settings)
    servers = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for candidate in servers:
        if isinstance(candidate, BaseWSGIServer):
            candidate.channel_class = PlainHttpChannel
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

"""Web layer: waitress, as the ini's `[server:main] use = egg:stevedore-registry#waitress` runs it.

Plain waitress, with a few fixes for a registry that faces clients and the network:

- TLS on the plain port. docker and containerd try HTTPS first, even against a plain-HTTP registry on 127.0.0.0/8,
  and fall back to HTTP only when the TLS handshake fails. Waitress takes the TLS ClientHello for the start of an
  HTTP request line and waits for the rest, so every docker command stalled for its 10 s handshake timeout. Like Go's
  net/http, we answer a TLS record on a plain port with a 400 at once, and the client falls back.
- Bodies nobody asked for. Waitress receives a whole request body (spooling it to a temporary file past 512 KiB)
  before the app runs, so an anonymous 300 MiB PATCH would be written to disk only to be answered 401. Each request
  is looked at as soon as its headers are parsed, by the path the app will route (waitress's PATH_INFO: percent-
  decoded, leading slashes collapsed, `url_prefix` removed):
  - under /v2/ (but the token endpoint), a body is admitted only with credentials that could be valid: a Bearer
    token signed by one of the app's keys and not expired, or well-formed Basic credentials (their password is
    checked by the app, with bcrypt, which must not run in this event loop). Anything else gets the registry's 401;
  - a token request (/v2/token), and a request anywhere outside /v2/, may carry at most 64 KiB, not chunked; more
    gets 413.
  The body is never stored and the connection closes (see `PlainHttpChannel.handle_close`).
- Slow clients. Once the first byte of a request arrives (or the connection opens, for its first request), its
  headers must arrive within `header_timeout` seconds, and a small form (a token request, a body outside /v2/) within
  the same time; otherwise the connection is closed. An idle keep-alive connection between requests is left to
  `channel_timeout`, as Go's net/http leaves it to its IdleTimeout. Waitress's own `channel_timeout` only closes a
  connection that sends nothing at all, which a client trickling one byte every few seconds never is. Bodies of
  other requests may be slow: `channel_timeout` bounds their silences.
- A full disk. When the spool of a body fills its disk (ENOSPC or EDQUOT in TMPDIR), the client gets the registry's
  507 UNAVAILABLE (the app's answer to a full blob folder or database) instead of a closed connection; the spooled
  part is removed with the request.
- Upload bodies as they arrive. An admitted upload PATCH (credentials that could be valid, under
  /v2/<name>/blobs/uploads/<id>, chunked or over STREAM_MIN_BYTES) is handed to the app as soon as its headers are in;
  the body flows through a bounded StreamingBody (web/streaming_body.py) into the app's `wsgi.input` while it is
  received, so receiving, hashing and writing overlap and no byte is spooled. The channel stops reading its socket
  while that buffer is full; a disconnect, a silence longer than `channel_timeout` or an invalid chunked body makes the
  app's read raise BodyInterrupted (a ConnectionError); what still arrives after the app answered is read and dropped,
  never taken for the next request. Everything else is received whole first, as waitress does.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import waitress
from pyramid.config import global_registries
from waitress.buffers import ReadOnlyFileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import Error, RequestEntityTooLarge

from stevedore.domain.tokens import CLOCK_SKEW_SECONDS
from stevedore.web import metrics
from stevedore.web import workers as workers_module
from stevedore.web.app import Components
from stevedore.web.registry.token import MAX_FORM_BYTES
from stevedore.web.request_log import escaped_for_log
from stevedore.web.security import parse_basic, parse_bearer
from stevedore.web.streaming_body import StreamingBody

log = logging.getLogger(__name__)
request_log = logging.getLogger("stevedore.requests")

_TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record, the first byte a TLS client sends
_REFUSAL = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"This server speaks plain HTTP; put a TLS-terminating proxy in front of it for HTTPS.\n"
)

DEFAULT_HEADER_TIMEOUT = 15.0
TOKEN_PATH = "/v2/token"
# A body outside /v2/ (the pages' forms, later) is received whole before the app runs, by anyone: keep it small.
MAX_PAGE_BODY_BYTES = 64 * 1024
# After a refusal: read and drop what the client still sends for this long, or this much, before closing. Closing a
# socket with unread bytes makes the kernel send a reset, which can destroy the response before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# A Host header that may be copied into a challenge: a DNS name or an IP literal and a port, nothing that could end
# the quoted string.
_PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")

TokenVerifier = Callable[[str], dict[str, Any]]


def is_registry_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def routed_path(path: str, url_prefix: str = "") -> str:
    """The PATH_INFO waitress will give the app for the parser's `path` (already percent-decoded), as
    waitress.task.WSGITask.get_environment builds it: leading slashes collapsed into one, `url_prefix` removed. The
    app decides what is a registry request (web/errors.is_registry_path) and Pyramid routes on exactly this."""
    if path.startswith("/"):
        path = "/" + path.lstrip("/")
    if url_prefix:
        if path == url_prefix:
            path = ""
        elif path.startswith(url_prefix + "/"):
            path = path[len(url_prefix) :]
    return path


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


class PageRefusal(Error):  # type: ignore[misc]
    """A refusal outside the registry API, in plain text."""

    code = 413
    reason = "Payload Too Large"

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        return f"{self.code} {self.reason}", [("Content-Type", "text/plain; charset=utf-8")], f"{self.body}\n".encode()


@dataclass(frozen=True)
class Guard:
    """What the runner checks before the app runs, and what it needs to answer like the app."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # 0: no limit
    public_url: str | None = None  # the app's stevedore.public_url
    service_name: str | None = None  # the app's stevedore.service_name
    url_scheme: str = "http"
    url_prefix: str = ""  # waitress's url_prefix, removed from the path before the app routes it
    # Behind a trusted proxy the app builds its URL from X-Forwarded-*, which waitress applies later: do not guess.
    trust_host: bool = True
    # The app's access token signature check (JwtTokenSigner.verify). None: the app was not found, and any
    # Authorization header lets a body under /v2/ in.
    verify_token: TokenVerifier | None = None

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

    def routed_path(self, request: HTTPRequestParser) -> str:
        return routed_path(request.path, self.url_prefix)

    def may_be_valid(self, authorization: str | None) -> bool:
        """Could these credentials be accepted by the app? Parsed as the app parses them (web/security.py); a
        Bearer token's signature and expiry are checked here (no database), a Basic password is left to the app."""
        if authorization is None:
            return False
        if self.verify_token is None:
            return True  # the app's keys are unknown: as before, any Authorization header
        if parse_basic(authorization) is not None:
            return True
        token = parse_bearer(authorization)
        if token is None:
            return False
        try:
            claims = self.verify_token(token)
        except Exception:  # TokenInvalid; anything else a malformed token may raise is no better
            return False
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            return False
        return bool(expires + CLOCK_SKEW_SECONDS >= time.time())

    def form_limited(self, path: str) -> bool:
        """A body on this path is small and anyone's: capped at its headers, and due within the header timeout."""
        return path == TOKEN_PATH or not is_registry_path(path)

    def refusal(self, request: HTTPRequestParser) -> Error | None:
        """The answer to a request whose headers are in and whose body is announced, or None to let it through."""
        path = self.routed_path(request)
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
        if not is_registry_path(path):
            if request.chunked or request.content_length > MAX_PAGE_BODY_BYTES:
                return PageRefusal(f"request bodies outside /v2/ are limited to {MAX_PAGE_BODY_BYTES} bytes")
            return None
        if not self.may_be_valid(request.headers.get("AUTHORIZATION")):
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


# Bodies handed to the app as they arrive, instead of spooled whole first: uploads' PATCHes with credentials, chunked
# or larger than this. A PUT (the last chunk, or a monolithic upload) is still received whole first: a finish that
# fails on a body cut short would keep the bytes that came, and a failed PUT must leave the upload as it was.
STREAM_MIN_BYTES = 1024 * 1024
STREAMED_METHODS = frozenset({"PATCH", "PUT"})  # a PUT cut short leaves its upload as it was (finish truncates)
_UPLOAD_PATH = re.compile(r"/v2/.+/blobs/uploads/[^/]+")
STREAM_RECV_BYTES = 256 * 1024  # per recv() while a body streams: waitress's 8 KiB costs a Python round per 8 KiB


def _streams(request: HTTPRequestParser, path: str) -> bool:
    """Is this admitted request's body handed to the app as it arrives?"""
    return (
        request.command in STREAMED_METHODS
        and request.body_rcv is not None
        and (request.chunked or request.content_length > STREAM_MIN_BYTES)
        and _UPLOAD_PATH.fullmatch(path) is not None
    )


class GuardedRequestParser(HTTPRequestParser):  # type: ignore[misc]
    """Waitress's parser, which asks the channel's guard about each request once its headers are parsed, and starts
    the channel's header clock at the request's first byte."""

    completed: bool  # set by waitress's parser
    headers: dict[str, str]
    headers_finished: bool
    empty: bool

    def __init__(self, adj: Any, channel: PlainHttpChannel) -> None:
        super().__init__(adj)
        self.channel = channel
        self.form_deadline = False  # a small form (token request, page) must arrive within the header timeout too
        self.stream: StreamingBody | None = None  # the body, when it is handed to the app as it arrives
        self.dispatched = False  # the request was handed to the app before its body was complete

    @property
    def awaited(self) -> bool:
        """Still within what must arrive before the header timeout."""
        return not self.headers_finished or (self.form_deadline and not self.completed)

    def received(self, data: bytes) -> int:
        channel = self.channel
        in_head = not self.headers_finished
        if in_head and data and channel.waiting_since is None:
            channel.waiting_since = time.monotonic()  # the first byte of a request: its headers are due from now
        try:
            if self.dispatched and self.chunked:
                # The app's thread reads these headers now; waitress's parser writes a Content-Length into them at
                # the end of a chunked body: let it write into a copy.
                headers, self.headers = self.headers, dict(self.headers)
                try:
                    consumed = int(super().received(data))
                finally:
                    self.headers = headers
            else:
                consumed = int(super().received(data))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return self._refuse_full_disk(data)
        if in_head and self.headers_finished and not self.completed:  # headers in, a body announced, no error yet
            guard = channel.guard
            refusal = guard.refusal(self)
            if refusal is not None:
                self.error = refusal
                self.completed = True
                self.expect_continue = False  # no "100 Continue": the client must not send the body
                channel.refused = True
                request_log.info(
                    "%s %s%s %s - 0.000s - (refused before its body)",  # as the app's request log writes a line
                    escaped_for_log(self.command),
                    escaped_for_log(guard.routed_path(self)),
                    f"?{escaped_for_log(self.query)}" if self.query else "",
                    refusal.code,
                )
                return len(data)  # the rest of this read is body: dropped, as the connection will close
            self.form_deadline = guard.form_limited(guard.routed_path(self))
            if self.error is None and _streams(self, guard.routed_path(self)):
                self._start_streaming()
        elif self.stream is not None and self.completed:
            if self.error is not None:  # a chunked body over max_request_body_size, or badly chunked
                self.stream.fail(
                    f"the request body is invalid: {getattr(self.error, 'body', self.error)}",
                    too_large=isinstance(self.error, RequestEntityTooLarge),
                )
            else:
                self.stream.end()
        if not self.awaited and not self.empty:
            # Blank lines between requests (an empty "request") keep the clock running: they are no request.
            channel.waiting_since = None
            channel.kept_alive = True
        return consumed

    def _start_streaming(self) -> None:
        """Hand this body to the app as it arrives: the receiver writes into a bounded StreamingBody instead of
        waitress's spool, and the channel dispatches the request now (see PlainHttpChannel.received)."""
        channel = self.channel
        self.stream = StreamingBody(channel.server.pull_trigger, float(self.adj.channel_timeout))
        self.body_rcv.buf = self.stream
        self.stream.getfile().on_first_read = functools.partial(channel.continue_streaming, self)

    def close(self) -> None:
        stream = self.stream
        if stream is None:
            super().close()
            return
        if not stream.complete and self.expect_continue:
            # The app answered without reading, and the client still waits for "100 Continue" before it sends
            # the body: it must not be read as the next request.
            self.expect_continue = False
            self.channel.close_when_flushed = True
        stream.close()  # from now on, what still arrives of the body is read and dropped

    def _refuse_full_disk(self, data: bytes) -> int:
        """The body's spool (a temporary file, already unlinked) hit a full disk: answer 507 and close, dropping
        the rest of the body; waitress closes the spool with the request, which frees what it held."""
        self.error = RegistryRefusal(
            507,
            "Insufficient Storage",
            "UNAVAILABLE",
            "the registry's storage is full: nothing was stored; retry once space has been freed",
            None,
            [],
        )
        self.completed = True
        self.expect_continue = False
        self.channel.refused = True
        log.warning("a request body could not be spooled: the disk under TMPDIR is full")
        return len(data)


class PlainHttpChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTP channel that turns TLS handshakes away at once, refuses unwanted bodies before they are received and
    closes connections that keep their request headers waiting."""

    guard = Guard()
    _first_data = True
    refused = False  # a request was refused at its headers: the connection ends after that answer
    # Since when the awaited request headers (or small form) are due: from the connection's start for its first
    # request, else from the first byte of the request. None: nothing is due (a request's body is coming, or an idle
    # keep-alive connection, which channel_timeout governs).
    waiting_since: float | None = None
    kept_alive = False  # a request was received: between requests the connection may idle
    _in_write = False
    _sendfile_refused = False  # sendfile(2) failed as unsupported on this connection: waitress's loop sends
    _linger_until: float | None = None
    streaming_body: StreamingBody | None = None  # the body being read for a request the app already has
    # waitress's (untyped) HTTPChannel attributes this class sets
    request: Any
    close_when_flushed: bool
    sent_continue: bool
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
        return self._receive(data)

    def _receive(self, data: bytes) -> bool:
        """Waitress's HTTPChannel.received, and a request whose body streams is handed to a task as soon as its
        headers are in; the channel keeps feeding that request's parser until its body is complete."""
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data:
                request: Any = self.request
                if request is None:
                    request = self.request = self.parser_class(self.adj)
                n = request.received(data)
                if (
                    request.expect_continue
                    and request.headers_finished
                    and not self.requests
                    and not self.sent_continue
                    and not request.dispatched
                ):
                    self.send_continue()
                if request.stream is not None and not request.dispatched and not request.completed:
                    request.dispatched = True
                    self.streaming_body = request.stream
                    self.requests.append(request)
                    if len(self.requests) == 1:
                        self.server.add_task(self)
                if request.completed:
                    self.sent_continue = False
                    if request.dispatched:
                        self.streaming_body = None
                        if request.error is not None or request.stream.failed:
                            self.close_when_flushed = True  # where the next request starts is unknown
                    elif not request.empty:
                        self.requests.append(request)
                        if len(self.requests) == 1:
                            self.server.add_task(self)
                    self.request = None
                if n >= len(data):
                    break
                data = data[n:]
        return True

    def continue_streaming(self, request: GuardedRequestParser) -> None:
        """The app starts reading a body whose client waits for "100 Continue": send it (from the app's thread)."""
        with self.outbuf_lock:
            if not request.expect_continue or not self.connected:
                return
            request.expect_continue = False
            payload = b"HTTP/1.1 100 Continue\r\n\r\n"
            self.outbufs[-1].append(payload)
            self.current_outbuf_count += len(payload)
            self.total_outbufs_len += len(payload)
        self.server.pull_trigger()

    def readable(self) -> bool:
        # The event loop asks every channel at least once a second (asyncore_loop_timeout): the place for timers.
        # It also asks every channel at every event, so this stays cheap: the clock is read only when a timer needs
        # it, and waitress's own test (HTTPChannel.readable) is inlined.
        if self._linger_until is not None:
            if time.monotonic() < self._linger_until:
                return True
            self.will_close = True
            return False
        requests = self.requests
        pending_output = self.total_outbufs_len
        if self.guard.header_timeout > 0:
            waiting_since = self.waiting_since
            if requests or pending_output:
                # A request is being served or its response sent: headers pipelined behind it are due from when
                # their turn comes, not while the app works.
                if waiting_since is not None:
                    self.waiting_since = time.monotonic()
            elif waiting_since is None:
                if not self.kept_alive:
                    # A new connection owes its first request's headers at once, as in Go.
                    self.waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > self.guard.header_timeout:
                log.debug(
                    "closing a connection from %s: no complete request headers in %s s",
                    self.addr,
                    self.guard.header_timeout,
                )
                self.will_close = True
                return False
        stream = self.streaming_body
        if stream is not None:
            # A body handed to the app: read it while the app has room for it, whatever is queued or being sent.
            return not (self.will_close or self.close_when_flushed) and stream.wants_more()
        return not (
            self.will_close
            or self.close_when_flushed
            or len(requests) > self.adj.channel_request_lookahead
            or pending_output
        )

    def handle_read(self) -> None:
        if self._linger_until is None:
            if self.streaming_body is None:
                super().handle_read()
                return
            try:
                data = self.recv(max(self.adj.recv_bytes, STREAM_RECV_BYTES))
            except OSError:
                self.handle_close()
                return
            if data:
                self.last_activity = time.time()
                self.received(data)
            else:
                self.connected = False
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

    def _flush_some(self, do_close: bool = True) -> bool:
        """Waitress's loop over the output buffers, except that blob files (`wsgi.file_wrapper`) go out with
        sendfile(2), from the page cache to the socket inside the kernel: waitress reads each chunk into Python,
        sends it, then reads it again to skip past it, so every byte of a pull went through Python twice."""
        sent = 0
        while True:
            outbuf = self.outbufs[0]
            if not self._sendfile_refused and _is_sendfile_buffer(outbuf):
                if outbuf.remain > 0:
                    count = self._sendfile(outbuf, do_close)
                    if count is None:
                        continue  # this file cannot be sent so: waitress's own loop sends it
                    if count <= 0:
                        break
                    sent += count
                    continue
            elif (length := outbuf.__len__()) > 0:  # __len__, not len(): waitress's guard against OverflowError
                num_sent = self.send(outbuf.get(min(length, self.sendbuf_len)), do_close=do_close)
                if not num_sent:
                    break
                outbuf.skip(num_sent, True)
                sent += num_sent
                self.total_outbufs_len -= num_sent
                continue
            # This buffer is sent. The last one stays: it is the one waitress writes into next.
            if len(self.outbufs) == 1:
                break
            finished = self.outbufs.pop(0)
            try:
                finished.close()
            except Exception:
                log.exception("closing a sent output buffer failed")
        if sent:
            self.last_activity = time.time()
            return True
        return False

    def _sendfile(self, outbuf: Any, do_close: bool) -> int | None:
        """One sendfile(2) of what is left of `outbuf`, at most a socket buffer's worth; 0 when the socket is full
        or gone (a disconnect closes the channel as waitress's send does); None when the file or the socket does not
        support sendfile (some FUSE or network filesystems): this connection then sends as waitress does."""
        source = outbuf.file
        offset = source.tell()
        try:
            count = os.sendfile(self.socket.fileno(), source.fileno(), offset, min(outbuf.remain, _SENDFILE_MAX))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            if exc.errno in _DISCONNECTED:
                if do_close:
                    self.handle_close()
                return 0
            if exc.errno in _SENDFILE_UNSUPPORTED:
                log.info("sendfile is not supported here (%s): sending blobs through Python", exc.strerror)
                self._sendfile_refused = True
                return None
            raise
        if count == 0:  # the file is shorter than announced: end the connection rather than send short
            if not self.will_close:
                log.error("a blob file ended %d bytes early: closing the connection", outbuf.remain)
            if do_close:
                self.handle_close()
            else:  # a worker thread (write_soon): never close under the event loop; it closes on its next write
                self.will_close = True
            return 0
        source.seek(offset + count)
        outbuf.remain -= count
        self.total_outbufs_len -= count
        return int(count)

    def handle_close(self) -> None:
        stream = self.streaming_body
        if stream is not None:
            stream.fail("the client disconnected before the end of the request body")
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


_SENDFILE_MAX = 8 * 1024 * 1024  # per call: the event loop gets back to other connections between calls
_SENDFILE_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
_DISCONNECTED = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED, errno.EPIPE})


def _is_sendfile_buffer(outbuf: Any) -> bool:
    """A response body that is a real file waitress would send from (`wsgi.file_wrapper` of an opened file)."""
    if type(outbuf) is not ReadOnlyFileBasedBuffer or not hasattr(os, "sendfile"):
        return False
    try:
        outbuf.file.fileno()
    except (AttributeError, OSError, ValueError):  # BytesIO and the like
        return False
    return hasattr(outbuf, "remain")


# --- finding the app's components behind whatever wraps it ----------------------------------------------------------
_MAX_WRAPPERS_SEEN = 200
_MAX_WRAPPER_DEPTH = 6


def _components_of(candidate: Any) -> Components | None:
    """The Components of a Pyramid app (its registry's `stevedore`), without running any property."""
    try:
        registry = vars(candidate).get("registry")
        components = vars(registry).get("stevedore") if registry is not None else None
    except (TypeError, AttributeError):  # no __dict__, or not a mapping
        return None
    return components if isinstance(components, Components) else None


def _wrapped(candidate: Any) -> list[Any]:
    """What a WSGI middleware may hold its app in: its attributes, a partial's function and arguments, a closure's
    cells. Only stored values are read: no property or descriptor runs."""
    try:
        held = list(vars(candidate).values())
    except (TypeError, AttributeError):  # no __dict__, or not a mapping
        held = []
    if isinstance(candidate, functools.partial):
        held += [candidate.func, *candidate.args, *candidate.keywords.values()]
    if isinstance(candidate, types.MethodType):
        held += [candidate.__self__, candidate.__func__]
    if isinstance(candidate, types.FunctionType):
        for cell in candidate.__closure__ or ():
            try:
                held.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
    return held


def find_components(app: Any) -> Components | None:
    """The Components of the Stevedore app that `app` is or wraps (paste filters, WSGI middleware), else of the only
    Stevedore app Pyramid made in this process; None when there is none, or more than one to choose from."""
    seen: set[int] = set()
    level = [app]
    for _ in range(_MAX_WRAPPER_DEPTH):
        following: list[Any] = []
        for candidate in level:
            if id(candidate) in seen or len(seen) >= _MAX_WRAPPERS_SEEN or isinstance(candidate, str | bytes):
                continue
            seen.add(id(candidate))
            found = _components_of(candidate)
            if found is not None:
                return found
            following.extend(_wrapped(candidate))
        level = following
    # Pyramid keeps the registries of the apps Configurator.make_wsgi_app made (for pshell): a last resort.
    made = {id(c): c for c in (getattr(r, "stevedore", None) for r in global_registries) if isinstance(c, Components)}
    return next(iter(made.values())) if len(made) == 1 else None


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
    components = find_components(app)
    if components is None:
        log.warning(
            "the Stevedore app was not found behind the served WSGI app: bodies under /v2/ are admitted with any "
            "Authorization header (Bearer tokens are not verified before the body is received)"
        )
    app_settings = components.settings if components is not None else None
    servers = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for candidate in servers:
        if isinstance(candidate, BaseWSGIServer):
            guard = Guard(
                header_timeout=header_timeout,
                public_url=getattr(app_settings, "public_url", None),
                service_name=getattr(app_settings, "service_name", None),
                url_scheme=candidate.adj.url_scheme,
                url_prefix=candidate.adj.url_prefix,
                trust_host=not candidate.adj.trusted_proxy,
                verify_token=components.token_signer.verify if components is not None else None,
            )
            candidate.channel_class = type("PlainHttpChannel", (PlainHttpChannel,), {"guard": guard})
    _raise_open_file_limit(server.adj.connection_limit)
    return server


def serve_paste(app: Any, global_conf: dict[str, Any], **settings: Any) -> int:
    """The paste.server_runner entry point. `workers = N` (default 1; `auto`: one per core) serves the port from N
    processes (web/workers.py)."""
    logging.basicConfig()
    try:
        workers = workers_module.worker_count(settings.pop("workers", 1))
        settings["header_timeout"] = float(settings.get("header_timeout", DEFAULT_HEADER_TIMEOUT))
    except ValueError as exc:
        log.error("[server:main]: %s", exc)
        _exit(1)
    if workers > 1:
        unsafe = workers_module.fork_safe()
        if unsafe is not None:
            log.warning("serving from one process instead of %d workers: %s", workers, unsafe)
            workers = 1
    try:
        if workers > 1:
            header_timeout = settings.pop("header_timeout")
            sockets = workers_module.bind_sockets(settings)
            settings = {**workers_module.serving_settings(settings, sockets), "header_timeout": header_timeout}
        server = create_server(app, **settings) if workers == 1 else None
    except ValueError as exc:  # waitress's checks of its settings
        log.error("[server:main]: %s", exc)
        _exit(1)
    except OSError as exc:
        log.error(
            "cannot listen on %s: %s (another server there? PORT=8080 make run picks another port)",
            settings.get("listen", "?"),
            exc.strerror or exc,
        )
        _exit(1)
    if server is not None:
        server.print_listen("Serving on http://{}:{}")
        components = find_components(app)
        if components is not None:
            components.start_background()
        server.run()
        return 0
    for sock in sockets:
        print(f"Serving on {_address_of(sock)} with {workers} worker processes", flush=True)
    components = find_components(app)
    if components is not None:
        components.engine.dispose()  # the first process serves nothing: its connections would only be inherited

    def serve() -> None:
        if components is not None:
            components.forget_inherited_connections()
        worker_server = create_server(app, **settings)
        if components is not None:
            components.start_background()
        worker_server.run()

    # Each worker counts its metrics in files of its own in a private folder, which /metrics sums (web/metrics.py):
    # set before the fork, so the metrics the workers make write there; removed when the server stops (and, if it is
    # killed first, by the next server to start with the same TMPDIR).
    metrics_dir = metrics.make_multiprocess_dir()  # 0700, under TMPDIR
    metrics.use_multiprocess_dir(metrics_dir)
    try:
        status = workers_module.Supervisor(workers, serve, reaped=metrics.forget_process).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if status:
        _exit(status)
    return 0


def _exit(status: int) -> NoReturn:
    """End the process with this status: pserve catches SystemExit from a runner and exits 0, so a service manager
    (systemd's Restart=on-failure) would not see the failure."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _address_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_INET:
        return f"http://{address[0]}:{address[1]}"
    if sock.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    return f"unix:{address}"

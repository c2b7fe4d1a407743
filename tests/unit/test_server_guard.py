"""The runner's guard (web/server.py), without sockets: which path it judges, which credentials could be valid, how
a refusal is logged, and how it finds the app's token keys behind whatever wraps the app."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import logging
import time
from types import SimpleNamespace

import pytest
from pyramid.util import WeakOrderedSet
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask

from stevedore.adapters.token_keys import generate_signing_key_pem, load_signing_key
from stevedore.adapters.tokens import JwtTokenSigner
from stevedore.web import server
from stevedore.web.app import Components
from stevedore.web.server import (
    MAX_PAGE_BODY_BYTES,
    Guard,
    GuardedRequestParser,
    PageRefusal,
    RegistryRefusal,
    find_components,
    routed_path,
)

MiB = 1024 * 1024
SIGNER = JwtTokenSigner([load_signing_key(generate_signing_key_pem(), issuer="stevedore")])
FOREIGN = JwtTokenSigner([load_signing_key(generate_signing_key_pem(), issuer="stevedore")])
GUARD = Guard(verify_token=SIGNER.verify)


def parsed(head: str, prefix: str = "") -> HTTPRequestParser:
    """Waitress's parser after the head of a request, as the guard sees it."""
    parser = HTTPRequestParser(Adjustments(url_prefix=prefix))
    parser.received(head.encode("latin-1"))
    assert parser.headers_finished and parser.error is None
    return parser


def posted(target: str, length: int = 100 * MiB, headers: str = "", *, chunked: bool = False) -> HTTPRequestParser:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return parsed(f"POST {target} HTTP/1.1\r\nHost: registry.test\r\n{headers}{framing}\r\n\r\n")


def token(signer: JwtTokenSigner = SIGNER, **claims) -> str:
    return signer.sign({"iss": "stevedore", "sub": "alice", "aud": "registry.test", "exp": time.time() + 300, **claims})


# --- the path the app will route ------------------------------------------------------------------------------------
TARGETS = [
    "/v2/token",
    "//v2/token",
    "///v2/token",
    "/%2Fv2/token",
    "/%2f%2Fv2/token",
    "/v2%2Ftoken",
    "/v2/%74oken",
    "/%762/token",
    "http://registry.test/v2/token",
    "http://registry.test//v2/token",
    "/v2/./token",
    "/v2/../v2/token",
    "v2/token",
    "/v2/token?service=x",
    "/v2/a/b/blobs/uploads/",
    "//v2//a/blobs/uploads/",
    "/V2/token",
    "/",
    "*",
    "/login",
    "/prefix",
    "/prefix/v2/token",
    "//prefix//v2/token",
    "/prefixed/v2/token",
]


def waitress_path_info(parser: HTTPRequestParser, prefix: str) -> str:
    """PATH_INFO as waitress itself builds it for the app."""
    adj = Adjustments(url_prefix=prefix)
    stub_server = SimpleNamespace(adj=adj, effective_port=80, server_name="registry.test")
    channel = SimpleNamespace(
        server=stub_server, addr=("127.0.0.1", 1234), adj=adj, check_client_disconnected=lambda: None
    )
    parser.get_body_stream = lambda: None  # type: ignore[method-assign]
    return str(WSGITask(channel, parser).get_environment()["PATH_INFO"])


@pytest.mark.parametrize("prefix", ["", "/prefix"])
@pytest.mark.parametrize("target", TARGETS)
def test_the_guard_judges_the_path_waitress_gives_the_app(target, prefix):
    parser = posted(target, 10)
    assert routed_path(parser.path, prefix) == waitress_path_info(parser, prefix)


@pytest.mark.parametrize(
    "target",
    ["/v2/token", "//v2/token", "///v2/token", "/%2Fv2/token", "/v2/%74oken", "/%762/token", "http://h//v2/token"],
)
def test_a_big_token_form_is_refused_under_any_spelling_of_its_path(target):
    for parser in (posted(target), posted(target, chunked=True)):
        refusal = GUARD.refusal(parser)
        assert isinstance(refusal, RegistryRefusal)
        status, _, body = refusal.to_response()
        assert status == "413 Payload Too Large"
        assert json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    assert GUARD.refusal(posted(target, 64 * 1024)) is None  # a token form may be anonymous


def test_with_a_url_prefix_the_token_path_is_the_one_under_it():
    guard = dataclasses.replace(GUARD, url_prefix="/registry")
    refusal = guard.refusal(parsed(f"POST //registry/v2/token HTTP/1.1\r\nContent-Length: {MiB}\r\n\r\n"))
    assert isinstance(refusal, RegistryRefusal) and refusal.code == 413
    refusal = guard.refusal(parsed("POST /registry/v2/a/blobs/uploads/ HTTP/1.1\r\nContent-Length: 10\r\n\r\n"))
    assert isinstance(refusal, RegistryRefusal) and refusal.code == 401


@pytest.mark.parametrize("target", ["/", "/login", "/-/health", "/v2x", "/V2/token", "v2/token", "*", "http://h"])
def test_a_body_outside_the_registry_api_is_capped_at_64_kib(target):
    for parser in (posted(target, MAX_PAGE_BODY_BYTES + 1), posted(target, chunked=True)):
        refusal = GUARD.refusal(parser)
        assert isinstance(refusal, PageRefusal)
        status, headers, body = refusal.to_response("waitress")
        assert status == "413 Payload Too Large"
        assert headers == [("Content-Type", "text/plain; charset=utf-8")]
        assert b"65536" in body
    assert GUARD.refusal(posted(target, MAX_PAGE_BODY_BYTES)) is None


def test_dot_segments_stay_under_v2_where_a_body_needs_credentials():
    """Pyramid does not resolve `.` or `..`: /v2/./token is no token request, but a registry path."""
    refusal = GUARD.refusal(posted("/v2/./token", 10))
    assert isinstance(refusal, RegistryRefusal) and refusal.code == 401


# --- credentials that could be valid --------------------------------------------------------------------------------
def basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode()


REFUSED = {
    "none": lambda: None,
    "a forged bearer token": lambda: "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
    "a bearer token of another key": lambda: "Bearer " + token(FOREIGN),
    "an expired bearer token": lambda: "Bearer " + token(exp=time.time() - 31 - 5),
    "a bearer token without expiry": lambda: "Bearer " + SIGNER.sign({"sub": "alice"}),
    "a bearer token whose expiry is text": lambda: "Bearer " + token(exp="never"),
    "a bearer token with a true expiry": lambda: "Bearer " + token(exp=True),
    "an empty bearer token": lambda: "Bearer ",
    "a bearer token with garbage": lambda: "Bearer " + token() + "x",
    "basic that is not base64": lambda: "Basic !!!not base64!!!",
    "basic without a colon": lambda: basic(b"alice"),
    "basic that is not UTF-8": lambda: basic(b"alice:\xff\xfe"),
    "basic with non-ASCII base64": lambda: "Basic YWxpY2U6cGFzcw==\u00e9",
    "another scheme": lambda: "Digest username=alice",
    "a bare token": lambda: token(),
    "a scheme alone": lambda: "Basic",
}
ADMITTED = {
    "a valid bearer token": lambda: "Bearer " + token(),
    "a lower-case scheme": lambda: "bearer " + token(),
    "a bearer token expired within the clock skew": lambda: "Bearer " + token(exp=time.time() - 20),
    "a bearer token for another audience (the app checks it)": lambda: "Bearer " + token(aud="elsewhere"),
    "well-formed basic credentials (the app checks the password)": lambda: basic(b"alice:wrong password"),
    "basic with an empty password": lambda: basic(b"alice:"),
}


@pytest.mark.parametrize("authorization", REFUSED.values(), ids=REFUSED.keys())
def test_a_body_under_v2_with_credentials_that_cannot_be_valid_is_refused(authorization):
    authorization = authorization()  # made now: expiry is relative to the test's clock
    header = f"Authorization: {authorization}\r\n" if authorization is not None else ""
    refusal = GUARD.refusal(posted("/v2/a/b/blobs/uploads/", 300 * MiB, header))
    assert isinstance(refusal, RegistryRefusal)
    status, headers, body = refusal.to_response()
    assert status == "401 Unauthorized"
    assert json.loads(body) == {
        "errors": [
            {"code": "UNAUTHORIZED", "message": "authentication required: log in to this registry", "detail": {}}
        ]
    }
    assert ("WWW-Authenticate", 'Bearer realm="http://registry.test/v2/token",service="registry.test"') in headers


@pytest.mark.parametrize("authorization", ADMITTED.values(), ids=ADMITTED.keys())
def test_a_body_under_v2_with_credentials_that_could_be_valid_is_admitted(authorization):
    authorization = authorization()
    assert GUARD.refusal(posted("//v2/a/b/blobs/uploads/", 300 * MiB, f"Authorization: {authorization}\r\n")) is None


def test_without_the_apps_keys_any_authorization_header_is_admitted_as_before():
    guard = Guard()
    assert guard.refusal(posted("/v2/a/blobs/uploads/", 10, "Authorization: Digest x\r\n")) is None
    refusal = guard.refusal(posted("/v2/a/blobs/uploads/", 10))
    assert isinstance(refusal, RegistryRefusal) and refusal.code == 401


# --- the log line of a refusal --------------------------------------------------------------------------------------
def test_a_refusal_is_logged_like_the_request_log_with_every_unsafe_byte_escaped(caplog):
    channel = SimpleNamespace(guard=GUARD, waiting_since=None, kept_alive=False, refused=False)
    parser = GuardedRequestParser(Adjustments(), channel)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="stevedore.requests"):
        parser.received(
            b"PATCH //v2/a%20b%0a%1b%5C%C3%A9/blobs/uploads/x?n=1&x=a%20b HTTP/1.1\r\nContent-Length: 9\r\n\r\n"
        )
    assert channel.refused and parser.completed and not parser.expect_continue
    assert [record.getMessage() for record in caplog.records] == [
        r"PATCH /v2/a\x20b\x0a\x1b\x5c\xc3\xa9/blobs/uploads/x?n=1&x=a%20b 401 - 0.000s - (refused before its body)"
    ]


# --- finding the app's keys -----------------------------------------------------------------------------------------
def components(signer: JwtTokenSigner = SIGNER) -> Components:
    values = {field.name: None for field in dataclasses.fields(Components) if field.init}
    settings = SimpleNamespace(public_url="https://registry.example", service_name="svc")
    return Components(**{**values, "settings": settings, "token_signer": signer})  # type: ignore[arg-type]


class Registry:  # Pyramid's, as far as the search sees it (and weakly referable)
    def __init__(self, found: Components) -> None:
        self.stevedore = found


class PyramidLike:
    def __init__(self, found: Components) -> None:
        self.registry = Registry(found)

    def __call__(self, environ, start_response):
        return []


class Middleware:
    def __init__(self, app) -> None:
        self.application = app

    def __call__(self, environ, start_response):
        return self.application(environ, start_response)


def closure_filter(app):
    def filtered(environ, start_response):
        return app(environ, start_response)

    return filtered


def partial_filter(app):
    def call(inner, environ, start_response):
        return inner(environ, start_response)

    return functools.partial(call, app)


@pytest.fixture
def no_other_apps(monkeypatch):
    """Registries of apps other tests made stay out of it."""
    monkeypatch.setattr(server, "global_registries", WeakOrderedSet())


def test_the_apps_components_are_found_behind_layers_of_middleware(no_other_apps):
    found = components()
    app = PyramidLike(found)
    assert find_components(app) is found
    wrapped = partial_filter(closure_filter(Middleware(Middleware(app)).__call__))
    assert find_components(wrapped) is found
    assert find_components(lambda environ, start_response: []) is None
    assert find_components(PyramidLike(None)) is None  # type: ignore[arg-type]


def test_an_app_hidden_from_the_walk_is_found_through_pyramids_registries(monkeypatch):
    registries = WeakOrderedSet()
    monkeypatch.setattr(server, "global_registries", registries)
    hidden = {"app": PyramidLike(components())}  # a dict: not walked
    opaque = SimpleNamespace(held=[hidden])
    assert find_components(opaque) is None
    registry = hidden["app"].registry
    registries.add(registry)
    assert find_components(opaque) is registry.stevedore
    other = PyramidLike(components(FOREIGN)).registry
    registries.add(other)
    assert find_components(opaque) is None  # two to choose from: none


def test_create_server_gives_the_guard_the_apps_keys_and_warns_once_when_it_cannot(no_other_apps, caplog):
    wrapped = Middleware(PyramidLike(components()))
    created = server.create_server(wrapped, listen="127.0.0.1:0 127.0.0.1:0", header_timeout="3")
    try:
        guards = [s.channel_class.guard for s in created.map.values() if hasattr(s, "channel_class")]
        assert len(guards) == 2
        for guard in guards:
            assert guard.verify_token == SIGNER.verify and guard.header_timeout == 3
            assert (guard.public_url, guard.service_name) == ("https://registry.example", "svc")
    finally:
        created.close()

    with caplog.at_level(logging.WARNING, logger="stevedore.web.server"):
        created = server.create_server(closure_filter(object()), listen="127.0.0.1:0 127.0.0.1:0")
    try:
        guards = [s.channel_class.guard for s in created.map.values() if hasattr(s, "channel_class")]
        assert [guard.verify_token for guard in guards] == [None, None]
        warnings = [r for r in caplog.records if r.name == "stevedore.web.server" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "not found" in warnings[0].getMessage()
    finally:
        created.close()

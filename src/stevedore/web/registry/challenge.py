"""Web layer: the WWW-Authenticate challenge that sends docker, podman and friends to the token endpoint."""

from __future__ import annotations

import re
from urllib.parse import quote, urlparse

from pyramid.request import Request

from stevedore.domain.errors import NameInvalid
from stevedore.domain.model import RepositoryName
from stevedore.web.security import Permission

# RFC 9110 quoted-string: a `"` or `\` would end or escape the value (and let a caller add a second realm), and a
# control or non-ASCII character has no place in a header. Where one turns up anyway (a hostile Host header is the
# only way in), it is percent-encoded as in a URL, so no value can leave its quotes.
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\]')


def public_url(request: Request) -> str:
    """The installation's external URL: the configured one, else the request's own (waitress applies
    X-Forwarded-* from trusted proxies only)."""
    configured: str | None = request.registry.stevedore.settings.public_url
    return configured or request.host_url


def service_name(request: Request) -> str:
    configured: str | None = request.registry.stevedore.settings.service_name
    return configured or urlparse(public_url(request)).netloc


def required_scope(request: Request, permission: str | None) -> str | None:
    if permission == Permission.CATALOG:
        return "registry:catalog:*"
    if permission in (Permission.PULL, Permission.PUSH, Permission.DELETE):
        try:
            name = RepositoryName.parse((request.matchdict or {}).get("name") or "")
        except NameInvalid:
            return None  # never echo a name that does not parse: the request fails with NAME_INVALID anyway
        actions = "pull" if permission == Permission.PULL else f"pull,{permission}"
        return f"repository:{name}:{actions}"
    return None


def quoted(value: str) -> str:
    """`value` as an auth-param's quoted-string that nothing in it can break out of."""
    return '"' + _UNSAFE_IN_QUOTES.sub(lambda match: quote(match.group(), safe="", errors="surrogatepass"), value) + '"'


def challenge_header(request: Request, permission: str | None, *, insufficient: bool = False) -> str:
    parts = [f"realm={quoted(public_url(request) + '/v2/token')}", f"service={quoted(service_name(request))}"]
    scope = required_scope(request, permission)
    if scope:
        parts.append(f"scope={quoted(scope)}")
    if insufficient:
        parts.append('error="insufficient_scope"')
    return "Bearer " + ",".join(parts)


_SAFE_SCOPE = re.compile(r"[A-Za-z0-9._:/,*-]+")


def challenge_for_scopes(request: Request, scopes: list[str], *, insufficient: bool) -> str:
    """A challenge naming several scopes, space separated, as CNCF Distribution names a mount's source next to its
    target; a client that follows it asks one token for all of them. Build `scopes` from parsed names only: one
    that could break out of the quoted value is refused here (ValueError) rather than sent."""
    unsafe = [scope for scope in scopes if not _SAFE_SCOPE.fullmatch(scope)]
    if unsafe:
        raise ValueError(f"refusing to put {unsafe[0]!r} in a challenge")
    header = challenge_header(request, None)  # realm and service only
    if scopes:
        header += f',scope="{" ".join(scopes)}"'
    if insufficient:
        header += ',error="insufficient_scope"'
    return header

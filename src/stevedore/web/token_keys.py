"""Web layer: the public half of the token signing keys, for registries that trust Stevedore's tokens.

`/.well-known/jwks.json` (RFC 7517, each key with its `kid`, `alg` and certificate in `x5c`) and
`/-/token-certificates.pem` (the certificates, ready for CNCF Distribution's `auth.token.rootcertbundle`). Anonymous
on purpose: public keys are public.
"""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.web.registry.http import json_response

CACHE_CONTROL = "public, max-age=300"  # short: a rotated-in key must reach verifiers before it signs


@view_config(route_name="token_keys.jwks", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
def jwks(request: Request) -> Response:
    response = json_response(request.registry.stevedore.token_signer.jwks(), content_type="application/jwk-set+json")
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


@view_config(route_name="token_keys.certificates", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
def certificates(request: Request) -> Response:
    response = Response(
        body=request.registry.stevedore.token_signer.certificates_pem().encode(),
        content_type="application/x-pem-file",
    )
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response

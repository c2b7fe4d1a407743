"""Web layer: every route in one place. `registry.*` is the /v2/ protocol, `ui.*` the pages."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.security import NO_PERMISSION_REQUIRED

# distribution-spec: <name> is one or more path components, so the name pattern spans slashes and each route is
# told apart by its fixed suffix. It is deliberately loose: the view parses the name, so a bad one gets the spec's
# NAME_INVALID instead of a bare 404. `(?s:...)`: a name with a newline (`%0a`) is matched, and refused, like any.
NAME = "{name:(?s:.+)}"


def includeme(config: Configurator) -> None:
    config.add_static_view("static", "stevedore.web:static", cache_max_age=3600, permission=NO_PERMISSION_REQUIRED)

    config.add_route("registry.base", "/v2/")
    config.add_route("registry.base_noslash", "/v2")
    config.add_route("registry.token", "/v2/token")
    config.add_route("registry.catalog", "/v2/_catalog")
    config.add_route("registry.tags", f"/v2/{NAME}/tags/list")
    config.add_route("registry.manifest", f"/v2/{NAME}/manifests/{{reference}}")
    config.add_route("registry.uploads", f"/v2/{NAME}/blobs/uploads/")
    config.add_route("registry.upload", f"/v2/{NAME}/blobs/uploads/{{upload_id}}")
    config.add_route("registry.blob", f"/v2/{NAME}/blobs/{{digest}}")
    config.add_route("registry.referrers", f"/v2/{NAME}/referrers/{{digest}}")
    # Paths that name no endpoint still get a code from the spec's table, never a bare 404. Keep these three last
    # among the /v2/ routes: Pyramid tries routes in order, so they only see what nothing above matched. The server
    # decodes PATH_INFO before matching, so `manifests/a%2Fb` and `manifests/a/b` are the same path here: a
    # reference or upload id with a `/` in it (or an empty reference), which parses as neither and is answered so.
    config.add_route("registry.manifest_slashed", f"/v2/{NAME}/manifests/{{reference:.*}}")
    config.add_route("registry.upload_slashed", f"/v2/{NAME}/blobs/uploads/{{upload_id:.+}}")
    config.add_route("registry.unknown", "/v2/{path:(?s:.+)}")

    # For load balancers and orchestrators (web/health.py): the process answers; its database and storage answer
    # too (`/-/health` is the older name of `/-/ready`). Prometheus's scrape (web/metrics.py).
    config.add_route("healthy", "/-/healthy")
    config.add_route("ready", "/-/ready")
    config.add_route("health", "/-/health")
    config.add_route("metrics", "/metrics")
    # What other registries need to verify our tokens: the public keys as a JWKS and as a PEM certificate bundle.
    config.add_route("token_keys.jwks", "/.well-known/jwks.json")
    config.add_route("token_keys.certificates", "/-/token-certificates.pem")
    config.add_route("ui.home", "/")
    config.add_route("ui.login", "/login")
    config.add_route("ui.logout", "/logout")
    config.add_route("ui.setup", "/setup")
    config.add_route("ui.signup", "/users/sign_up")  # the original app's path: ?invite=CODE
    config.add_route("ui.invites", "/invites")
    config.add_route("ui.invite_revoke", "/invites/{invite_id:\\d+}/revoke")
    # Repository pages. A name spans slashes; `-` can start no name component, so `/-/` ends the name unambiguously.
    config.add_route("ui.repositories", "/repositories")
    config.add_route("ui.manifest", "/r/{name:.+?}/-/manifests/{digest}")
    config.add_route("ui.manifest_delete", "/r/{name:.+?}/-/manifests/{digest}/delete")
    config.add_route("ui.tag_delete", "/r/{name:.+?}/-/tags/{tag}/delete")
    config.add_route("ui.tag_history", "/r/{name:.+?}/-/tags/{tag}/history")
    config.add_route("ui.tag_restore", "/r/{name:.+?}/-/tags/{tag}/restore")
    config.add_route("ui.repository_delete", "/r/{name:.+?}/-/delete")
    config.add_route("ui.tokens", "/tokens")
    config.add_route("ui.token_revoke", "/tokens/{token_id:\\d+}/revoke")
    config.add_route("ui.audit", "/audit")
    config.add_route("ui.repository", "/r/{name:.+}")

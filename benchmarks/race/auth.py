"""The Authorization header a client sends: docker's way (follow the 401 challenge: a Bearer token from its realm
for the scope, or Basic where the challenge is Basic, as with Distribution's htpasswd) or Basic always."""

from __future__ import annotations

import base64
import http.client
import json
import re
from urllib.parse import urlencode, urlsplit


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def docker_auth(host: str, port: int, username: str, password: str, scope: str, timeout: float = 60) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        challenge = response.getheader("WWW-Authenticate") or ""
    finally:
        conn.close()
    if response.status != 401 or not challenge.lower().startswith("bearer "):
        return basic(username, password)
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = urlsplit(params["realm"])
    query = urlencode({"service": params.get("service", ""), "scope": scope})
    conn = http.client.HTTPConnection(realm.hostname or host, realm.port or 80, timeout=timeout)
    try:
        conn.request("GET", f"{realm.path}?{query}", headers={"Authorization": basic(username, password)})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"token request for {scope}: {response.status} {body[:300]!r}")
    document = json.loads(body)
    return f"Bearer {document.get('token') or document['access_token']}"

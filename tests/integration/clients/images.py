"""Build container images from scratch with the standard library only.

Nothing is ever pulled from the internet: every image the client tests push
is made here, byte for byte, so the tests know every digest in advance.

* :func:`docker_archive` - a ``docker save``-style tar (manifest.json, config,
  uncompressed layer tars) for ``docker load`` / ``podman load``.
* :func:`oci_layout` - an OCI image layout directory with gzip layers, for
  ``skopeo copy oci:DIR:TAG ...``.
* :func:`oci_multiarch_layout` - an OCI layout whose tag points at an image
  index with a linux/amd64 and a linux/arm64 image.
* :func:`artifact_manifest` - an OCI artifact (``artifactType``, empty config)
  with a ``subject``, pushed with :class:`RegistryHTTP` (plain urllib).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

FIXED_MTIME = 1_700_000_000  # deterministic tar headers
CREATED = "2023-11-14T22:13:20Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int | str, pattern: bool = False) -> bytes:
    """``size`` bytes: pseudo-random (incompressible) or a repeated pattern."""
    if pattern:
        unit = f"stevedore-{seed}-".encode()
        return (unit * (size // len(unit) + 1))[:size]
    return random.Random(f"stevedore:{seed}").randbytes(size)


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed, deterministic layer tar with the given files
    (parent directories are added as entries)."""
    buf = io.BytesIO()
    dirs_done: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs_done:
                    dirs_done.add(d)
                    ti = tarfile.TarInfo(d + "/")
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = FIXED_MTIME
                    tar.addfile(ti)
            data = files[name]
            ti = tarfile.TarInfo(name.strip("/"))
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = FIXED_MTIME
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    # compresslevel 1: these layers are mostly random bytes, speed matters
    return gzip.compress(data, compresslevel=1, mtime=0)


@dataclass
class Layer:
    tar: bytes  # uncompressed
    files: dict[str, bytes]

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)


def make_layers(sizes: list[int], seed: str, pattern: bool = False) -> list[Layer]:
    """One layer per size; layer ``i`` holds ``/layer{i}/data.bin`` with ``size``
    bytes and a small text file naming the seed (so seeds give unique layers)."""
    layers = []
    for i, size in enumerate(sizes):
        files = {
            f"layer{i}/data.bin": payload(size, f"{seed}:{i}", pattern=pattern),
            f"layer{i}/id.txt": f"{seed} layer {i} size {size}\n".encode(),
        }
        layers.append(Layer(tar=layer_tar(files), files=files))
    return layers


def image_config(
    diff_ids: list[str],
    arch: str = "amd64",
    os_: str = "linux",
    labels: dict[str, str] | None = None,
    variant: str | None = None,
) -> dict:
    cfg = {
        "architecture": arch,
        "os": os_,
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/layer0/data.bin"],
            "Labels": dict(labels or {}),
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": f"stevedore test layer {i}"} for i in range(len(diff_ids))],
    }
    if variant:
        cfg["variant"] = variant
    return cfg


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def manifest_json(obj) -> bytes:
    # Deliberately not canonical (odd indent, no key sorting, trailing
    # newline): a registry must store and serve these bytes unchanged.
    return (json.dumps(obj, indent=3) + "\n").encode()


# ---------------------------------------------------------------------------
# docker save archive
# ---------------------------------------------------------------------------


@dataclass
class DockerArchive:
    path: Path
    config: bytes
    layers: list[Layer]
    repo_tags: list[str]

    @property
    def image_id(self) -> str:
        """What ``docker inspect -f {{.Id}}`` reports: the config digest."""
        return sha256_digest(self.config)

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]


def docker_archive(
    path: Path,
    sizes: list[int],
    seed: str,
    repo_tags: list[str],
    pattern: bool = False,
    labels: dict[str, str] | None = None,
) -> DockerArchive:
    """Write a ``docker save``-style archive to ``path``."""
    layers = make_layers(sizes, seed, pattern=pattern)
    config = canonical_json(
        image_config([layer.diff_id for layer in layers], labels={"stevedore.test.seed": seed, **(labels or {})})
    )
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_paths = []
    path = Path(path)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = FIXED_MTIME
            tar.addfile(ti, io.BytesIO(data))

        for layer in layers:
            layer_dir = layer.diff_id.split(":", 1)[1]
            d = tarfile.TarInfo(layer_dir + "/")
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            d.mtime = FIXED_MTIME
            tar.addfile(d)
            add(f"{layer_dir}/VERSION", b"1.0")
            add(f"{layer_dir}/layer.tar", layer.tar)
            layer_paths.append(f"{layer_dir}/layer.tar")
        add(config_name, config)
        add(
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": config_name,
                        "RepoTags": list(repo_tags),
                        "Layers": layer_paths,
                    }
                ]
            ).encode(),
        )
    return DockerArchive(path=path, config=config, layers=layers, repo_tags=list(repo_tags))


# ---------------------------------------------------------------------------
# OCI image layout
# ---------------------------------------------------------------------------


@dataclass
class Blob:
    media_type: str
    data: bytes
    extra: dict = field(default_factory=dict)  # e.g. platform, annotations

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **more) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(self.extra)
        d.update(more)
        return d


@dataclass
class OCIImage:
    manifest: Blob
    config: Blob
    layers: list[Blob]  # gzip-compressed blobs
    diff_ids: list[str]
    platform: dict

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def layer_digests(self) -> list[str]:
        return [b.digest for b in self.layers]

    def blobs(self) -> list[Blob]:
        return [self.manifest, self.config, *self.layers]


def oci_image(
    sizes: list[int],
    seed: str,
    arch: str = "amd64",
    os_: str = "linux",
    variant: str | None = None,
    annotations: dict | None = None,
) -> OCIImage:
    layers = make_layers(sizes, seed)
    layer_blobs = [Blob(MT_OCI_LAYER_GZIP, gzip_bytes(layer.tar)) for layer in layers]
    diff_ids = [layer.diff_id for layer in layers]
    config = Blob(
        MT_OCI_CONFIG,
        canonical_json(
            image_config(diff_ids, arch=arch, os_=os_, variant=variant, labels={"stevedore.test.seed": seed})
        ),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layer_blobs],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    platform = {"architecture": arch, "os": os_}
    if variant:
        platform["variant"] = variant
    return OCIImage(
        manifest=Blob(MT_OCI_MANIFEST, manifest_json(manifest)),
        config=config,
        layers=layer_blobs,
        diff_ids=diff_ids,
        platform=platform,
    )


def _write_layout(root: Path, blobs: list[Blob], top: Blob, tag: str) -> None:
    root = Path(root)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for blob in blobs:
        p = root / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
        if not p.exists():
            p.write_bytes(blob.data)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [top.descriptor(annotations={"org.opencontainers.image.ref.name": tag})],
    }
    (root / "index.json").write_text(json.dumps(index, indent=2))


def oci_layout(root: Path, sizes: list[int], seed: str, tag: str = "latest") -> OCIImage:
    """Write an OCI image layout at ``root`` holding one image tagged ``tag``."""
    img = oci_image(sizes, seed)
    _write_layout(root, img.blobs(), img.manifest, tag)
    return img


@dataclass
class OCIMultiArch:
    index: Blob
    images: dict[str, OCIImage]  # by architecture

    @property
    def digest(self) -> str:
        return self.index.digest


def oci_multiarch_layout(root: Path, seed: str, tag: str = "latest", sizes: list[int] | None = None) -> OCIMultiArch:
    """An OCI layout whose ``tag`` is an image index of linux/amd64 and
    linux/arm64 (v8), each with its own manifest, config and layer."""
    sizes = sizes or [64 * 1024]
    images = {
        "amd64": oci_image(sizes, f"{seed}:amd64", arch="amd64"),
        "arm64": oci_image(sizes, f"{seed}:arm64", arch="arm64", variant="v8"),
    }
    index = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [img.manifest.descriptor(platform=img.platform) for img in images.values()],
        "annotations": {"org.opencontainers.image.description": f"stevedore multi-arch {seed}"},
    }
    index_blob = Blob(MT_OCI_INDEX, manifest_json(index))
    blobs = [b for img in images.values() for b in img.blobs()]
    _write_layout(root, [*blobs, index_blob], index_blob, tag)
    return OCIMultiArch(index=index_blob, images=images)


def read_layout_manifest(root: Path, tag: str | None = None) -> tuple[dict, bytes]:
    """Return (descriptor from index.json, raw manifest bytes) for ``tag``
    (or the only entry) of the OCI layout at ``root``."""
    root = Path(root)
    index = json.loads((root / "index.json").read_text())
    entries = index["manifests"]
    if tag is not None:
        entries = [d for d in entries if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    assert len(entries) == 1, f"expected one index.json entry for {tag!r}: {index}"
    desc = entries[0]
    raw = read_layout_blob(root, desc["digest"])
    return desc, raw


def read_layout_blob(root: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    data = (Path(root) / "blobs" / algo / hexd).read_bytes()
    assert sha256_digest(data) == digest, f"blob {digest} in {root} does not match its digest"
    return data


# ---------------------------------------------------------------------------
# OCI artifact with a subject (referrers API)
# ---------------------------------------------------------------------------


@dataclass
class Artifact:
    manifest: Blob
    config: Blob
    layers: list[Blob]
    artifact_type: str
    annotations: dict


def artifact_manifest(
    subject: dict, artifact_type: str, content: bytes, content_type: str, annotations: dict | None = None
) -> Artifact:
    """An OCI 1.1 artifact: image manifest with ``artifactType``, the empty
    config descriptor (``{}``, 2 bytes) and a ``subject``."""
    config = Blob(MT_OCI_EMPTY, EMPTY_JSON)
    assert config.digest == EMPTY_JSON_DIGEST
    layer = Blob(content_type, content)
    annotations = dict(annotations or {})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.descriptor(data=base64.b64encode(EMPTY_JSON).decode()),
        "layers": [layer.descriptor()],
        "subject": subject,
        "annotations": annotations,
    }
    return Artifact(
        manifest=Blob(MT_OCI_MANIFEST, manifest_json(manifest)),
        config=config,
        layers=[layer],
        artifact_type=artifact_type,
        annotations=annotations,
    )


# ---------------------------------------------------------------------------
# Minimal distribution-spec HTTP client (urllib)
# ---------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


def _parse_challenge(header: str) -> tuple[str, dict]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    # key="value" pairs, values may contain commas inside quotes
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # let the caller see 3xx
        return None


class RegistryHTTP:
    """Plain-HTTP distribution client: answers a Basic or a Bearer challenge
    (token fetched from the realm with Basic credentials)."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._tokens: dict[str, str] = {}
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.log: list[str] = []  # "METHOD path -> status" for assertion messages

    def _basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _raw(self, method: str, url: str, data: bytes | None, headers: dict) -> Response:
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                resp = Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            resp = Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())
        self.log.append(f"{method} {url} -> {resp.status}")
        return resp

    def _token(self, params: dict, scope: str | None) -> str:
        q = {"service": params.get("service", "")}
        if scope or params.get("scope"):
            q["scope"] = scope or params["scope"]
        realm = params["realm"]
        sep = "&" if "?" in realm else "?"
        r = self._raw("GET", realm + sep + urllib.parse.urlencode(q), None, {"Authorization": self._basic()})
        assert r.status == 200, f"token endpoint {realm} answered {r.status}: {r.body[:500]!r}"
        body = r.json()
        token = body.get("token") or body.get("access_token")
        assert token, f"token endpoint gave no token: {body}"
        return token

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict | None = None, scope: str | None = None
    ) -> Response:
        url = path if path.startswith("http") else self.url + path
        headers = dict(headers or {})
        key = scope or ""
        if key in self._tokens:
            headers["Authorization"] = self._tokens[key]
        resp = self._raw(method, url, data, headers)
        if resp.status != 401:
            return resp
        challenge = resp.headers.get("www-authenticate", "")
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            self._tokens[key] = self._basic()
        elif scheme == "bearer":
            self._tokens[key] = "Bearer " + self._token(params, scope)
        else:
            return resp
        headers["Authorization"] = self._tokens[key]
        return self._raw(method, url, data, headers)

    # -- convenience ------------------------------------------------------
    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256_digest(data)
        scope = f"repository:{name}:pull,push"
        r = self.request("HEAD", f"/v2/{name}/blobs/{digest}", scope=scope)
        if r.status == 200:
            return digest
        r = self.request("POST", f"/v2/{name}/blobs/uploads/", data=b"", headers={"Content-Length": "0"}, scope=scope)
        assert r.status == 202, f"POST upload: {r.status} {r.body[:500]!r}"
        loc = urllib.parse.urljoin(self.url + "/", r.headers["location"])
        sep = "&" if "?" in loc else "?"
        r = self.request(
            "PUT",
            f"{loc}{sep}digest={urllib.parse.quote(digest)}",
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            scope=scope,
        )
        assert r.status == 201, f"PUT upload: {r.status} {r.body[:500]!r}"
        return digest

    def put_manifest(self, name: str, reference: str, blob: Blob) -> Response:
        return self.request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            data=blob.data,
            headers={"Content-Type": blob.media_type},
            scope=f"repository:{name}:pull,push",
        )

    def get(self, name: str, path: str, accept: str | None = None) -> Response:
        headers = {"Accept": accept} if accept else {}
        return self.request("GET", f"/v2/{name}/{path}", headers=headers, scope=f"repository:{name}:pull")

"""skopeo 1.9 against the live registry: byte-exact copies both ways, tags,
deletes, multi-arch indexes, and (Stevedore) the referrers API."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time

import pytest

from . import images

pytestmark = pytest.mark.clients

SIZES = [1 << 20, 300]  # a 1 MiB random layer and a tiny one


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_layout(skopeo, tmp_path, request, fmt: str, name: str, tag: str = "v1", seed: str | None = None):
    """Build an OCI layout and copy it to ``name:tag``; return (image, name, digest)."""
    seed = seed or request.node.name
    layout = tmp_path / f"layout-{seed.replace('/', '_')}"
    img = images.oci_layout(layout, SIZES, seed, tag=tag)
    digestfile = tmp_path / f"digest-{tag}"
    skopeo(
        "copy",
        "--format",
        fmt,
        "--digestfile",
        str(digestfile),
        *skopeo.dest(),
        f"oci:{layout}:{tag}",
        skopeo.ref(f"{name}:{tag}"),
    )
    return img, name, digestfile.read_text().strip()


def test_copy_oci_layout_keeps_oci_manifest_byte_exact(skopeo, registry_http, tmp_path, request, repo_name):
    img, name, pushed = push_layout(skopeo, tmp_path, request, "oci", repo_name())
    # skopeo does not rewrite an OCI manifest when the format stays OCI
    assert pushed == img.digest, "skopeo --digestfile differs from the source manifest digest"

    raw = skopeo.inspect_raw(f"{name}:v1")
    assert sha(raw) == pushed, f"sha256 of `inspect --raw` {sha(raw)} != digest skopeo pushed {pushed}\n{raw[:2000]!r}"
    assert raw == img.manifest.data, "registry changed the manifest bytes"

    # by digest too, and the registry's headers agree
    assert skopeo.inspect_raw(f"{name}@{pushed}") == raw
    r = registry_http.get(name, f"manifests/{pushed}", accept=images.MT_OCI_MANIFEST)
    assert r.status == 200, (r.status, r.body[:500], registry_http.log)
    assert r.body == raw
    assert r.headers.get("docker-content-digest") == pushed, r.headers
    assert r.headers.get("content-type", "").split(";")[0] == images.MT_OCI_MANIFEST, r.headers

    info = skopeo.inspect(f"{name}:v1")
    assert info["Digest"] == pushed
    assert info["Layers"] == img.layer_digests
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert "v1" in info["RepoTags"]


def test_copy_oci_layout_as_docker_v2s2(skopeo, registry_http, tmp_path, request, repo_name):
    img, name, pushed = push_layout(skopeo, tmp_path, request, "v2s2", repo_name())
    raw = skopeo.inspect_raw(f"{name}:v1")
    assert sha(raw) == pushed, f"sha256 of `inspect --raw` {sha(raw)} != digest skopeo pushed {pushed}\n{raw[:2000]!r}"
    m = json.loads(raw)
    assert m["mediaType"] == images.MT_DOCKER_MANIFEST, m
    assert m["config"]["mediaType"] == images.MT_DOCKER_CONFIG, m
    # the conversion keeps the blobs: same config and same compressed layers
    assert m["config"]["digest"] == img.config.digest
    assert [layer["digest"] for layer in m["layers"]] == img.layer_digests
    assert all(layer["mediaType"] == images.MT_DOCKER_LAYER_GZIP for layer in m["layers"]), m

    r = registry_http.get(name, "manifests/v1", accept=images.MT_DOCKER_MANIFEST)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.body == raw
    assert r.headers.get("docker-content-digest") == pushed, r.headers
    assert r.headers.get("content-type", "").split(";")[0] == images.MT_DOCKER_MANIFEST, r.headers

    # the config blob is served byte-exact
    r = registry_http.get(name, f"blobs/{img.config.digest}")
    assert r.status == 200, (r.status, r.body[:500])
    assert r.body == img.config.data


def test_copy_registry_to_oci_layout(skopeo, tmp_path, request, repo_name):
    img, name, pushed = push_layout(skopeo, tmp_path, request, "oci", repo_name(), tag="roundtrip")
    out = tmp_path / "pulled"
    digestfile = tmp_path / "pulled-digest"
    skopeo("copy", "--digestfile", str(digestfile), *skopeo.src(), skopeo.ref(f"{name}:roundtrip"), f"oci:{out}:back")
    desc, raw = images.read_layout_manifest(out, "back")
    assert desc["digest"] == pushed == img.digest
    assert raw == img.manifest.data
    m = json.loads(raw)
    assert [layer["digest"] for layer in m["layers"]] == img.layer_digests
    for blob in [*img.layers, img.config]:
        assert images.read_layout_blob(out, blob.digest) == blob.data, f"blob {blob.digest} differs"


def test_list_tags(skopeo, tmp_path, request, repo_name):
    name = repo_name()
    _img, _, _ = push_layout(skopeo, tmp_path, request, "oci", name, tag="1.0")
    layout = tmp_path / f"layout-{request.node.name}"
    for tag in ("1.1", "latest"):
        skopeo("copy", *skopeo.dest(), f"oci:{layout}:1.0", skopeo.ref(f"{name}:{tag}"))
    # a second, different image under another tag
    push_layout(skopeo, tmp_path, request, "v2s2", name, tag="other", seed=f"{request.node.name}-2")
    res = json.loads(skopeo("list-tags", *skopeo.remote(), skopeo.ref(name)).out)
    assert sorted(res["Tags"]) == ["1.0", "1.1", "latest", "other"], res
    assert res["Repository"].endswith(name), res


def test_delete_then_inspect_fails(skopeo, tmp_path, request, repo_name):
    name = repo_name()
    _img, _, pushed = push_layout(skopeo, tmp_path, request, "oci", name, tag="doomed")
    keep, _, _keep_digest = push_layout(
        skopeo, tmp_path, request, "oci", name, tag="keep", seed=f"{request.node.name}-keep"
    )
    assert skopeo.inspect(f"{name}:doomed")["Digest"] == pushed

    skopeo("delete", *skopeo.remote(), skopeo.ref(f"{name}:doomed"))

    res = skopeo.fails("inspect", *skopeo.remote(), "--raw", skopeo.ref(f"{name}:doomed"))
    assert "manifest unknown" in res.err.lower() or "not found" in res.err.lower(), res.describe()
    skopeo.fails("inspect", *skopeo.remote(), "--raw", skopeo.ref(f"{name}@{pushed}"))
    # the other image in the repository is untouched
    assert skopeo.inspect_raw(f"{name}:keep") == keep.manifest.data
    tags = json.loads(skopeo("list-tags", *skopeo.remote(), skopeo.ref(name)).out)["Tags"]
    assert tags == ["keep"], tags


def test_plain_http_port_fails_a_tls_handshake_fast(live_registry):
    """skopeo, podman, buildah (containers/image) and dockerd, told a registry
    is insecure (--tls-verify=false, registries.conf insecure=true, dockerd's
    127.0.0.0/8 default), try HTTPS first and fall back to plain HTTP only
    when the TLS handshake fails. Go's net/http answers a ClientHello on a
    plain port with a 400 at once; a server that waits for a request line
    instead costs every client command a 10 s TLS handshake timeout."""
    host, port = live_registry.host.rsplit(":", 1)
    if live_registry.url.startswith("https://"):
        return  # the registry speaks TLS itself: nothing to fall back from
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.do_handshake()
            outcome = "handshake succeeded"
        except TimeoutError:
            outcome = "handshake timed out"
        except (ssl.SSLError, OSError) as e:
            outcome = f"handshake refused ({e.__class__.__name__}: {e})"
    elapsed = time.monotonic() - t0
    assert elapsed < 3 and "timed out" not in outcome, (
        f"a TLS ClientHello to the plain-HTTP registry port took {elapsed:.1f}s ({outcome}): "
        "the server must reject it at once (e.g. answer 400 and close), or every "
        "docker/podman/buildah/skopeo call waits 10 s for its HTTPS probe to time out"
    )


def test_wrong_credentials_are_refused(skopeo, tmp_path, request, repo_name):
    _img, name, _ = push_layout(skopeo, tmp_path, request, "oci", repo_name())
    res = skopeo.fails(
        "inspect",
        "--tls-verify=false",
        "--creds",
        f"{skopeo.registry.username}:definitely-wrong",
        "--raw",
        skopeo.ref(f"{name}:v1"),
    )
    assert "unauthorized" in res.err.lower() or "authentication required" in res.err.lower(), res.describe()
    # and no credentials at all
    skopeo.fails("inspect", "--tls-verify=false", "--no-creds", "--raw", skopeo.ref(f"{name}:v1"))


@pytest.fixture
def multiarch(skopeo, tmp_path, request, repo_name):
    """An amd64+arm64 OCI index copied with ``copy --all``."""
    name = repo_name()
    layout = tmp_path / "multi"
    ma = images.oci_multiarch_layout(layout, request.node.name, tag="multi")
    digestfile = tmp_path / "multi-digest"
    skopeo(
        "copy",
        "--all",
        "--digestfile",
        str(digestfile),
        *skopeo.dest(),
        f"oci:{layout}:multi",
        skopeo.ref(f"{name}:multi"),
    )
    return ma, name, digestfile.read_text().strip()


def test_multiarch_copy_all(skopeo, registry_http, multiarch):
    ma, name, pushed = multiarch
    assert pushed == ma.digest
    raw = skopeo.inspect_raw(f"{name}:multi")
    assert raw == ma.index.data, "registry changed the index bytes"
    assert sha(raw) == pushed

    r = registry_http.get(name, "manifests/multi", accept=f"{images.MT_OCI_INDEX}, {images.MT_OCI_MANIFEST}")
    assert r.status == 200 and r.body == raw, (r.status, r.body[:300])
    assert r.headers.get("content-type", "").split(";")[0] == images.MT_OCI_INDEX, r.headers

    for arch, img in ma.images.items():
        info = skopeo.inspect(f"{name}:multi", "--override-arch", arch, "--override-os", "linux")
        assert info["Architecture"] == arch, info
        assert info["Layers"] == img.layer_digests, (arch, info)
        assert info["Labels"]["stevedore.test.seed"].endswith(arch), info
        # each child is stored byte-exact under its digest
        assert skopeo.inspect_raw(f"{name}@{img.digest}") == img.manifest.data


def test_copy_single_platform_by_digest(skopeo, multiarch, tmp_path, request, repo_name):
    ma, name, _ = multiarch
    arm = ma.images["arm64"]
    dest = repo_name("arm64")
    digestfile = tmp_path / "arm-digest"
    skopeo(
        "copy",
        "--digestfile",
        str(digestfile),
        *skopeo.src(),
        *skopeo.dest(),
        skopeo.ref(f"{name}@{arm.digest}"),
        skopeo.ref(f"{dest}:arm64"),
    )
    assert digestfile.read_text().strip() == arm.digest
    assert skopeo.inspect_raw(f"{dest}:arm64") == arm.manifest.data
    info = skopeo.inspect(f"{dest}:arm64")
    assert info["Architecture"] == "arm64" and info["Layers"] == arm.layer_digests, info

    # and the other way: only the arm64 image out of the index, into a layout
    out = tmp_path / "arm-layout"
    skopeo("copy", *skopeo.src(), "--override-arch", "arm64", skopeo.ref(f"{name}:multi"), f"oci:{out}:arm")
    desc, raw = images.read_layout_manifest(out, "arm")
    assert desc["digest"] == arm.digest and raw == arm.manifest.data


def test_artifact_with_subject_and_referrers(skopeo, registry_http, tmp_path, request, live_registry, repo_name):
    img, name, pushed = push_layout(skopeo, tmp_path, request, "oci", repo_name())
    subject = img.manifest.descriptor()
    art = images.artifact_manifest(
        subject,
        "application/vnd.stevedore.test.sbom+json",
        json.dumps({"sbom": request.node.name}).encode(),
        "application/json",
        annotations={"org.opencontainers.image.created": images.CREATED},
    )
    for blob in [art.config, *art.layers]:
        registry_http.push_blob(name, blob.data)
    put = registry_http.put_manifest(name, art.manifest.digest, art.manifest)
    assert put.status == 201, (put.status, put.body[:500], registry_http.log)
    assert put.headers.get("docker-content-digest") == art.manifest.digest, put.headers

    r = registry_http.get(name, f"manifests/{art.manifest.digest}", accept=images.MT_OCI_MANIFEST)
    assert r.status == 200 and r.body == art.manifest.data, (r.status, r.body[:300])
    # skopeo can read it too
    assert skopeo.inspect_raw(f"{name}@{art.manifest.digest}") == art.manifest.data

    if live_registry.flavor != "stevedore":
        return  # Distribution 2.8 has no referrers API; the push itself is checked above

    # a registry that supports the referrers API says so on the PUT
    assert put.headers.get("oci-subject") == pushed, put.headers
    r2 = registry_http.put_manifest(name, art.manifest.digest, art.manifest)  # idempotent
    assert r2.status == 201, (r2.status, r2.body[:300])
    assert r2.headers.get("oci-subject") == pushed, r2.headers

    r = registry_http.get(name, f"referrers/{pushed}")
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers.get("content-type", "").split(";")[0] == images.MT_OCI_INDEX, r.headers
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == images.MT_OCI_INDEX, index
    ours = [d for d in index["manifests"] if d["digest"] == art.manifest.digest]
    assert len(ours) == 1, index
    d = ours[0]
    assert d["mediaType"] == images.MT_OCI_MANIFEST, d
    assert d["size"] == art.manifest.size, d
    assert d["artifactType"] == art.artifact_type, d
    assert d.get("annotations", {}) == art.annotations, d

    # filtering by artifactType: either applied (and announced) or not at all
    r = registry_http.get(name, f"referrers/{pushed}?artifactType=application%2Fvnd.none")
    assert r.status == 200, (r.status, r.body[:300])
    if "artifacttype" in r.headers.get("oci-filters-applied", "").lower():
        assert r.json()["manifests"] == [], r.body
    else:
        assert any(x["digest"] == art.manifest.digest for x in r.json()["manifests"]), r.body

    # an image with no referrers gives an empty index, not a 404
    r = registry_http.get(name, f"referrers/{art.manifest.digest}")
    assert r.status == 200 and r.json()["manifests"] == [], (r.status, r.body[:300])

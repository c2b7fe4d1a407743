#!/usr/bin/env bash
# Install the real OCI/Docker clients used by tests/integration/clients
# (docker.io, podman, skopeo, buildah), the peer registry tools
# (docker-registry = CNCF Distribution, apache2-utils for htpasswd), and the
# browser of tests/integration/browser (Debian's chromium, driven headless by
# Playwright through executable_path: Playwright never downloads a browser),
# and Debian's nginx, the TLS-terminating proxy of tests/integration/tls (the
# tests run it unprivileged with their own config, prefix and port).
#
# Idempotent: installs with apt-get only what is missing, and runs
# `apt-get update` only when something needs installing. Quiet unless it fails.
set -euo pipefail

PACKAGES=(docker.io podman skopeo buildah docker-registry apache2-utils chromium fonts-liberation nginx curl)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-client-tools.sh: must run as root (or with sudo available)" >&2
        exit 1
    fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

log="$(mktemp -t install-client-tools.XXXXXX.log)"
trap 'rm -f "$log"' EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install-client-tools.sh: installing ${missing[*]}" >&2
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-client-tools.sh: apt-get update failed" >&2
    exit 1
fi
# --no-install-recommends keeps it small; containerd/runc/crun/conmon come in
# as hard dependencies of docker.io / podman / buildah.
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-client-tools.sh: apt-get install failed" >&2
    exit 1
fi

# Packaged services may try to start via init scripts; the tests run their own
# private daemons, so nothing else is needed here. Verify the binaries exist.
for bin in /usr/bin/docker /usr/sbin/dockerd /usr/bin/podman /usr/bin/skopeo \
           /usr/bin/buildah /usr/bin/docker-registry /usr/bin/htpasswd /usr/bin/chromium \
           /usr/sbin/nginx /usr/bin/curl; do
    if [ ! -x "$bin" ]; then
        echo "install-client-tools.sh: expected $bin after install, not found" >&2
        exit 1
    fi
done

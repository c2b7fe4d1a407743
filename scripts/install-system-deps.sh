#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, only those that are missing: PostgreSQL for the database tests,
# and the real registry clients (docker, podman, buildah, skopeo) for the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)

if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install these Debian packages first (as root): ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -x scripts/install-client-tools.sh ] || [ -f scripts/install-client-tools.sh ]; then
  bash scripts/install-client-tools.sh
fi

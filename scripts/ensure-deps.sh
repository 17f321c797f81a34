#!/bin/sh
# Make sure this machine has what Resin needs: Node 20+, the Debian packages in
# scripts/apt-packages.txt, and the npm dependencies. Installs what is missing when
# run as root; otherwise prints the exact command to run. Quiet when all is present.
set -eu
cd "$(dirname "$0")/.."

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "resin: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

missing=""
for pkg in $(grep -v '^#' scripts/apt-packages.txt); do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  case "$status" in *" installed") ;; *) missing="$missing $pkg" ;; esac
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "resin: installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >&2
  else
    echo "resin: missing Debian packages:$missing" >&2
    echo "  install with: sudo apt-get install --no-install-recommends$missing" >&2
    exit 1
  fi
fi

# npm ci when node_modules is absent or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "resin: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi

#!/bin/sh
# Make sure this machine has what Resin needs: Node 20+, the Debian packages in
# scripts/apt-packages.txt, a Go for its Go-module builds, and the npm dependencies. Installs what is missing when
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

# Go, for Resin's Go-module builds (the Terraform tests' OpenTofu where the machine has no
# terraform): where there is none (not on PATH, not in /usr/local/go), Debian's
# golang-1.23-go from this release's backports, from the same Debian archive this machine
# already uses (its own apt sources name it; no host is written here). scripts/go-env.sh
# then runs the Go toolchain the wrapper modules need through it, fetched once from the
# Go module proxy.
. scripts/go-env.sh
if ! command -v go >/dev/null 2>&1; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$(id -u)" -ne 0 ]; then
    echo "resin: Go is not installed (Resin builds Go modules with it)" >&2
    echo "  install with: sudo sh scripts/ensure-deps.sh (Debian's golang-1.23-go from ${codename:-bookworm}-backports)" >&2
    exit 1
  fi
  backports=/etc/apt/sources.list.d/resin-backports.sources
  if [ ! -f "$backports" ]; then
    if ! sh scripts/backports-source.sh "$codename" > "$backports.tmp"; then
      rm -f "$backports.tmp"
      echo "resin: Go is not installed, and this machine's apt sources name no Debian archive for ${codename:-its release} main to take it from" >&2
      echo "  install Go 1.21 or newer and put it on PATH (or in /usr/local/go), then run the command again" >&2
      exit 1
    fi
    echo "resin: adding ${codename}-backports from this machine's Debian archive ($backports), for Go" >&2
    mv "$backports.tmp" "$backports"
  fi
  echo "resin: installing Go (Debian's golang-1.23-go from ${codename}-backports)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends -t "${codename}-backports" golang-1.23-go >&2
  . scripts/go-env.sh
  echo "resin: Go $(go env GOVERSION) (fetched through the Go module proxy by Debian's $(GOTOOLCHAIN=local go env GOVERSION))" >&2
fi

# npm ci when node_modules is absent or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "resin: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi

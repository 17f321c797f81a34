# Sourced (`. scripts/go-env.sh`) by the npm scripts (npm test, which .ci/run runs) and the unit suite's global
# setup: puts a go command on PATH that can build Resin's Go wrapper modules, which need
# the Go their go.mod names (test/tools/opentofu: 1.26.6) or newer. In order: a go
# already on PATH, /usr/local/go (where Go's own archive installs), else Debian's
# golang-1.23-go from bookworm-backports (scripts/ensure-deps.sh installs it where there
# is no Go). A go older than the wrappers need is told to run RESIN_GO_TOOLCHAIN, which
# it takes from the Go module proxy once (GOTOOLCHAIN; Resin's Go builds keep an exact
# GOTOOLCHAIN and record the version that ran). A GOTOOLCHAIN already set is left alone.
RESIN_GO_TOOLCHAIN=go1.26.8
RESIN_GO_NEEDS=go1.26.6
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    PATH="$PATH:/usr/local/go/bin"
  elif [ -x /usr/lib/go-1.23/bin/go ]; then
    PATH="$PATH:/usr/lib/go-1.23/bin"
  fi
  export PATH
fi
if [ -z "${GOTOOLCHAIN:-}" ] && command -v go >/dev/null 2>&1; then
  resin_go=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
  if [ "$(printf '%s\n%s\n' "$resin_go" "$RESIN_GO_NEEDS" | sort -V | head -n 1)" != "$RESIN_GO_NEEDS" ]; then
    GOTOOLCHAIN=$RESIN_GO_TOOLCHAIN
    export GOTOOLCHAIN
  fi
  unset resin_go
fi

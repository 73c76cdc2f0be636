#!/usr/bin/env bash
# http_mem0.sh — mem0's own client against engram serve: installs the
# mem0ai npm package (version 3) in a scratch folder, starts the server on
# a free port with a keys file, runs tests/mem0/client_test.mjs with the
# client's telemetry off, and stops the server with SIGTERM.
#
#   bash tests/http_mem0.sh /path/to/engram
#
# Needs curl, node (18 or later) and npm (scripts/deps.sh installs them) and a
# reachable npm registry. Without them the test fails, unless
# ENGRAM_TEST_NPM=off: then it says why it skips and exits 0.
# ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test works in a
# fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/http_mem0.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
command -v curl >/dev/null || { echo "http_mem0: curl is required" >&2; exit 1; }
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/http_mem0.XXXXXX")

source "$HERE/common/cli_lib.sh"
source "$HERE/common/http_lib.sh"

# The client is not there: fail, or skip when told to.
unavailable() {
  if [ "${ENGRAM_TEST_NPM:-}" = off ]; then
    echo "http_mem0: SKIP: $1 (ENGRAM_TEST_NPM=off)"
    rm -rf "$T"
    exit 0
  fi
  echo "http_mem0: FAIL: $1. Install node and npm (bash scripts/deps.sh) and" \
    "let npm reach its registry, or set ENGRAM_TEST_NPM=off to skip this test" \
    "(scratch folder kept: $T)." >&2
  exit 1
}

command -v node >/dev/null 2>&1 || unavailable "node is not installed"
command -v npm >/dev/null 2>&1 || unavailable "npm is not installed"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || unavailable "node $(node --version) is too old; the client needs 18 or later"

# The client alone: mem0ai's peer dependencies serve its embedded (OSS)
# mode, which the test does not use.
mkdir -p "$T/npm"
if ! (cd "$T/npm" && npm install --no-audit --no-fund --legacy-peer-deps \
  --ignore-scripts mem0ai@3) >"$T/npm.log" 2>&1; then
  unavailable "npm install mem0ai@3 failed: $(tail -n 3 "$T/npm.log" | tr '\n' ' ')"
fi
version=$(cd "$T/npm" && node -p 'require("./node_modules/mem0ai/package.json").version')
case $version in
  3.*) pass ;;
  *) fail "npm installed mem0ai $version, not a version 3" ;;
esac

# ------------------------------------------------------------- the server
ALL_KEY=mem0-test-all-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
ALICE_KEY=mem0-test-alice-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
cat >"$T/keys" <<EOF
$ALL_KEY *
$ALICE_KEY user:alice
EOF
AUTH=$ALL_KEY
server_start "$T/mem0.db" --keys "$T/keys"
pass

# ------------------------------------------------------------- the client
set +e
(cd "$T/npm" && env ENGRAM_URL="$BASE" ENGRAM_KEY="$ALL_KEY" \
  ENGRAM_KEY_ALICE="$ALICE_KEY" MEM0_TELEMETRY=false MEM0_DIR="$T/mem0home" \
  node "$HERE/mem0/client_test.mjs") >"$T/client.out" 2>"$T/client.err"
rc=$?
set -e
grep '^not ok' "$T/client.out" >&2 || true
if [ -s "$T/client.err" ]; then
  cat "$T/client.err" >&2
fi
summary=$(tail -n 1 "$T/client.out")
if [[ $summary =~ ^passed\ ([0-9]+)\ failed\ ([0-9]+)$ ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  [ "$rc" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || fail "client_test exited $rc"
else
  fail "client_test did not finish (exit $rc): $(tail -n 5 "$T/client.out")"
fi
[ -d "$T/mem0home" ] && fail "the client wrote its config folder (telemetry is on?)" || pass

# ----------------------------------------------------------- the shutdown
server_stop

echo "http_mem0: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
  rm -rf "$T"
  exit 0
fi
echo "http_mem0: kept $T for inspection" >&2
exit 1

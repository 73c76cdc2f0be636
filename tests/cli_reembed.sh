#!/usr/bin/env bash
# cli_reembed.sh — switching embedders from the command line: a database
# made with the default embedder refuses another's vectors (exit 1, saying
# to reembed), `engram reembed` switches it and gives every memory a vector
# of the new embedder (human and --json summaries), after which writes work
# and the memories carry vectors of the new dimension; a bad --embedder is
# a usage error naming the spec.
#
#   bash tests/cli_reembed.sh /path/to/engram
#
# ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test works in a
# fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/cli_reembed.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/cli_reembed.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS ENGRAM_EMBEDDER
DB=$T/reembed.db

source "$HERE/common/cli_lib.sh"

# vector_of ID: in NFLOATS, how many numbers the exported "embedding" of
# memory ID (a line of OUT) has, 0 when none; in EMBEDDER, its embedder.
vector_of() {
  local line vec
  line=$(grep -F "\"id\":\"$1\"" <<<"$OUT" || true)
  EMBEDDER=$(sed -n 's/.*"embedder":"\([^"]*\)".*/\1/p' <<<"$line")
  vec=$(sed -n 's/.*"embedding":\[\([^]]*\)\].*/\1/p' <<<"$line")
  NFLOATS=0
  if [ -n "$vec" ]; then NFLOATS=$(tr ',' '\n' <<<"$vec" | grep -c .); fi
}

# ------------------------------------------------------------------ help
run "$BIN" reembed --help
expect_rc 0 "reembed --help"
expect_out "usage: engram [global options] reembed" "reembed --help"
run "$BIN" help
expect_out "  reembed " "help lists reembed"

# ------------------------------------------------------ a bad --embedder
run "$BIN" --db "$DB" --embedder bogus list
expect_rc 2 "--embedder bogus"
expect_err "'bogus'" "--embedder bogus names the spec"
run "$BIN" --db "$DB" --embedder hashed:7 list
expect_rc 2 "--embedder hashed:7"
expect_err "'hashed:7'" "--embedder hashed:7 names the spec"

# ------------------------------------ three memories, default embedder
ids=()
for text in "the lighthouse keeper logs every ship" \
            "fresh bread on Saturday mornings" \
            "the violin needs new strings"; do
  run e add "$text"
  expect_rc 0 "add $text"
  expect_id "add $text"
  ids+=("${OUT%% *}")
done
run e export
expect_rc 0 "export (default embedder)"
vector_of "${ids[0]}"
if [ "$NFLOATS" -eq 384 ] && [ "$EMBEDDER" = hashed-v1 ]; then pass; else
  fail "default embedder: $NFLOATS floats of '$EMBEDDER', expected 384 of hashed-v1"
fi

# ------------------------------------------- another embedder: refused
run e --embedder hashed:64 add "refused before the switch"
expect_rc 1 "add with another embedder"
expect_err "reembed" "the refusal says to reembed"
expect_err "hashed-v1/384" "the refusal names the database's embedder"
run e list
expect_lines 3 "nothing stored by the refused add"

# ------------------------------------------------------------- reembed
run e --embedder hashed:64 reembed
expect_rc 0 "reembed to hashed:64"
expect_out "reembedded 3 of 3" "reembed summary"
expect_out "dim 64" "reembed summary names the dimension"
run e --embedder hashed:64 --json reembed
expect_rc 0 "reembed again (--json)"
expect_json "reembed --json"
expect_out '"reembedded":0' "nothing left to reembed"
expect_out '"scanned":3' "reembed --json scanned"
expect_out '"dim":64' "reembed --json dim"

run e --embedder hashed:64 add "accepted after the switch"
expect_rc 0 "add after the switch"
expect_id "add after the switch"
added=${OUT%% *}
run e --embedder hashed:64 --json get "$added"
expect_rc 0 "get the new memory"
expect_out "accepted after the switch" "get the new memory"
run e --embedder hashed:64 export
expect_rc 0 "export after the switch"
for id in "${ids[@]}" "$added"; do
  vector_of "$id"
  if [ "$NFLOATS" -eq 64 ] && [ "$EMBEDDER" = hashed-v1 ]; then pass; else
    fail "memory $id after reembed: $NFLOATS floats of '$EMBEDDER', expected 64 of hashed-v1"
  fi
done

# ------------------------------- the default embedder is now the stranger
run e add "refused by the default now"
expect_rc 1 "add with the default after the switch"
expect_err "reembed" "the refusal says to reembed"
run e --embedder none reembed
expect_rc 2 "reembed with --embedder none"
expect_err "--embedder none" "reembed with none says why"

# --------------------------------------------------------------- summary
echo "cli_reembed: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "cli_reembed: scratch files kept in $T" >&2
  exit 1
fi
rm -rf "$T"

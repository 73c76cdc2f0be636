#!/usr/bin/env bash
# cli_agent.sh — the agent commands end to end: context (the injected memory
# section, human and --json) and remember (a stored, linked turn).
#
#   bash tests/cli_agent.sh /path/to/engram
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/cli_agent.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/cli_agent.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS
DB=$T/agent.db
source "$HERE/common/cli_lib.sh"

# ------------------------------------------------------------- remember
run e --ns chat remember --user "I prefer green tea" --assistant "Noted: tea, not coffee."
expect_rc 0 "remember"
expect_out "user      " "remember prints the user id"
expect_out "exchange  " "remember prints the exchange id"
user_id=$(awk '/^user/ {print $2}' <<<"$OUT")
reply_id=$(awk '/^assistant/ {print $2}' <<<"$OUT")
run e --ns chat get "$user_id"
expect_rc 0 "the user turn is stored"
expect_out "I prefer green tea" "the user turn's content"
run e --ns chat related "$reply_id"
expect_out "I prefer green tea" "the reply is linked to the user turn"
run e --ns chat --json remember --user "second" --assistant "reply two"
expect_json "remember --json"
expect_out '"exchange_id"' "remember --json has the exchange id"
run e --ns chat remember --user "only one side"
expect_rc 2 "remember without --assistant"
expect_err "give both --user TEXT and --assistant TEXT" "remember's usage message"
run e --ns chat remember --user "" --assistant "x"
expect_rc 1 "remember with an empty side"
run e --ns chat list
expect_lines 6 "two turns are six memories; the refused one wrote nothing"

# -------------------------------------------------------------- context
run e --ns chat context "what tea do I like?"
expect_rc 0 "context"
expect_out "## Relevant memories" "context header"
expect_out "] I prefer green tea" "context holds the user's preference"
expect_out "[episodic, " "context shows type and time"
run e --ns chat context "tea" --no-headers --max 1 --max-chars 5
expect_rc 0 "context with options"
expect_no_out "## Relevant memories" "--no-headers"
expect_lines 1 "--max 1"
expect_out "[...cut]" "--max-chars cuts"
run e --ns chat --json context "tea"
expect_rc 0 "context --json"
expect_json "context --json"
expect_out '"timed_out":false' "context --json reports timed_out"
expect_out '"count":' "context --json reports the count"
run e --ns chat context "submarine"
expect_rc 0 "context with nothing relevant"
expect_err "no memory in namespace chat is relevant" "context says nothing matched"
run e --ns chat context '"NEAR(tea* ^green) : - AND OR'
expect_rc 0 "context with FTS syntax in the message"
expect_out "green tea" "hostile text is searched as words"
run e --ns chat context
expect_rc 2 "context without a message"
run e --ns chat context tea --timeout 0
expect_rc 2 "context --timeout 0"
run "$BIN" --db "$T/none.db" context tea
expect_rc 1 "context on a missing database"

echo "cli_agent: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "cli_agent: scratch files kept in $T" >&2
  exit 1
fi
rm -rf "$T"

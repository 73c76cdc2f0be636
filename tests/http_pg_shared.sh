#!/usr/bin/env bash
# http_pg_shared.sh — two `engram serve` processes sharing one PostgreSQL
# database, as many hosts would: a memory written through one is read,
# listed and found through the other; both memorize conversation turns at
# the same time and nothing is lost (every turn's three memories are in the
# database, counted by PostgreSQL itself); both stop cleanly.
#
#   ENGRAM_TEST_PG=CONNINFO|FILE bash tests/http_pg_shared.sh /path/to/engram
#
# ENGRAM_TEST_PG names the test server (ctest's pg fixture sets it); the
# test works in a schema of its own, dropped at the end. ENGRAM_TEST_PG=off
# skips it with a printed reason (exit 77). Needs curl and psql.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/http_pg_shared.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
PG=${ENGRAM_TEST_PG:-}
[ -f "$PG" ] && PG=$(cat "$PG")
if [ "$PG" = off ]; then
  echo "http_pg_shared: skipped: ENGRAM_TEST_PG=off"
  exit 77
fi
if [ -z "$PG" ]; then
  echo "http_pg_shared: ENGRAM_TEST_PG is not set (ctest's pg fixture sets it;" \
    "set it to a conninfo, or to off to skip)" >&2
  exit 1
fi
for tool in curl psql; do
  command -v $tool >/dev/null || { echo "http_pg_shared: $tool is required" >&2; exit 1; }
done
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/http_pg_shared.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS ENGRAM_LISTEN ENGRAM_KEYS

source "$HERE/common/cli_lib.sh"
source "$HERE/common/http_lib.sh"

SCHEMA=shared_$$_$RANDOM
psql "$PG" -qX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA" >/dev/null
DB="$PG options='-csearch_path=$SCHEMA'"
sql() { psql "$DB" -qXtA -v ON_ERROR_STOP=1 -c "$1"; }

# Two servers: http_lib tracks one at a time, so each one's variables are
# saved after it starts.
SERVER_PIDS=()
stop_all() {
  for pid in "${SERVER_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  psql "$PG" -qX -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
}
NEXT_SERVER_LOG=$T/server-a.log
server_start "$DB"
trap stop_all EXIT
A=$BASE A_PID=$SERVER_PID A_LOG=$SERVER_LOG
SERVER_PIDS+=("$A_PID")
NEXT_SERVER_LOG=$T/server-b.log
server_start "$DB"
trap stop_all EXIT
B=$BASE B_PID=$SERVER_PID B_LOG=$SERVER_LOG
SERVER_PIDS+=("$B_PID")

# post BASE PATH JSON: CODE and BODY.
post() {
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data "$3" "$1$2") || CODE=000
  BODY=$(cat "$T/body")
}
get() {
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' "$1$2") || CODE=000
  BODY=$(cat "$T/body")
}

# -------------------------------------------- written on A, read through B
post "$A" /v1/memories '{"ns":"team","content":"the deploy key rotates every ninety days","type":"semantic"}'
expect_code 201 "A stores a memory"
ID=$(field id)
[ -n "$ID" ] && pass || fail "A's answer has no id: $BODY"

get "$B" "/v1/memories/$ID?ns=team"
expect 200 "ninety days" "B reads the memory A wrote"
get "$B" "/v1/memories?ns=team"
expect 200 "$ID" "B lists it"
post "$B" /v1/search '{"ns":"team","query":"when does the deploy key rotate","limit":5}'
expect 200 "$ID" "B finds it by search"

# Changed through B, seen through A.
CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H 'Content-Type: application/json' \
  --data '{"ns":"team","content":"the deploy key rotates every thirty days"}' "$B/v1/memories/$ID")
BODY=$(cat "$T/body")
expect_code 200 "B updates it"
get "$A" "/v1/memories/$ID?ns=team"
expect 200 "thirty days" "A reads B's change"

# ------------------------------- concurrent memorize from both: none lost
TURNS=${TURNS:-150}
memorize() { # memorize BASE TAG: TURNS turns, 8 at a time; prints the codes
  seq 1 "$TURNS" | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
    -X POST -H 'Content-Type: application/json' \
    --data "{\"ns\":\"chat\",\"user\":\"$2 question {} about the garden\",\"assistant\":\"$2 answer {}: water the tomatoes\"}" \
    "$1/v1/turns"
}
memorize "$A" a >"$T/codes-a" &
MA=$!
memorize "$B" b >"$T/codes-b" &
MB=$!
wait $MA $MB
OK_A=$(grep -c '^20[01]$' "$T/codes-a" || true)
OK_B=$(grep -c '^20[01]$' "$T/codes-b" || true)
if [ "$OK_A" = "$TURNS" ] && [ "$OK_B" = "$TURNS" ]; then pass; else
  fail "every turn is acknowledged: A $OK_A/$TURNS, B $OK_B/$TURNS (codes: $(sort "$T/codes-a" "$T/codes-b" | uniq -c | tr '\n' ' '))"
fi
# Each turn is three memories (user, assistant, exchange) and their links.
N=$(sql "SELECT count(*) FROM memories WHERE ns = 'chat'")
if [ "$N" = $((6 * TURNS)) ]; then pass; else
  fail "PostgreSQL holds $N memories of ns chat, expected $((6 * TURNS))"
fi
for tag in a b; do
  N=$(sql "SELECT count(*) FROM memories WHERE ns = 'chat' AND content LIKE '$tag answer %'")
  if [ "$N" = "$TURNS" ]; then pass; else
    fail "server $tag's assistant replies: $N stored, expected $TURNS"
  fi
done
# Both servers see all of them.
for base in "$A" "$B"; do
  post "$base" /v1/search '{"ns":"chat","query":"tomatoes garden","limit":1000}'
  expect_code 200 "search over the shared turns"
  n=$(count id)
  if [ "$n" -ge $((2 * TURNS)) ]; then pass; else
    fail "search through $base finds $n memories, expected at least $((2 * TURNS))"
  fi
done

# ------------------------------------------------------------ both stop
SERVER_PID=$B_PID SERVER_LOG=$B_LOG
server_stop
SERVER_PID=$A_PID SERVER_LOG=$A_LOG
server_stop

echo "http_pg_shared: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
  cd /
  rm -rf "$T"
  exit 0
fi
echo "http_pg_shared: scratch folder kept: $T" >&2
exit 1

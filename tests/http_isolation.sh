#!/usr/bin/env bash
# http_isolation.sh — an API key for namespace A cannot reach namespace B
# through any route of engram serve: every route that takes a namespace,
# applied to B, answers 403 "forbidden" (not 404, which would tell whether
# a memory exists, and never B's data), and afterwards B is exactly as it
# was. Table-driven: one row per route and way of naming B.
#
#   bash tests/http_isolation.sh /path/to/engram
#
# Needs curl. ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test
# works in a fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/http_isolation.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
command -v curl >/dev/null || { echo "http_isolation: curl is required" >&2; exit 1; }
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/http_isolation.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS ENGRAM_LISTEN ENGRAM_KEYS
DB=$T/main.db

source "$HERE/common/cli_lib.sh"
source "$HERE/common/http_lib.sh"

# ------------------------------------------------------------ the server
KEY_ALL=isolation-admin-key-0123456789
KEY_A=isolation-key-for-a-0123456789
printf '# admin sets up B; KEY_A may use a and the mem0 user alice\n%s *\n%s a user:alice\n' \
  "$KEY_ALL" "$KEY_A" >"$T/keys"

AUTH=$KEY_ALL
server_start "$DB" --keys "$T/keys"

# req METHOD PATH [JSON [ACCEPT]]: CODE and BODY of the response.
req() {
  local args=(-s -o "$T/body" -w '%{http_code}' -X "$1"
              -H "Authorization: Bearer $AUTH")
  if [ $# -ge 3 ] && [ -n "$3" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  if [ $# -ge 4 ] && [ -n "$4" ]; then
    args+=(-H "Accept: $4")
  fi
  CODE=$(curl "${args[@]}" "$BASE$2" </dev/null) || CODE=000
  BODY=$(cat "$T/body")
}

req GET /healthz
expect_code 200 "healthz"

# ------------------------------------------- B's memories (admin key)
# Every text of B carries SECRET: no answer to KEY_A may contain it.
SECRET=zebra-secret-of-b
req POST /v1/memories "{\"ns\":\"b\",\"content\":\"$SECRET one: the vault code\",\"type\":\"semantic\"}"
expect_code 201 "setup: B1"
B1=$(field id)
req POST /v1/memories "{\"ns\":\"b\",\"content\":\"$SECRET two: the backup vault\"}"
expect_code 201 "setup: B2"
B2=$(field id)
req POST /v1/relationships "{\"ns\":\"b\",\"source\":\"$B1\",\"target\":\"$B2\",\"kind\":\"related\",\"strength\":0.9}"
expect_code 201 "setup: B1 -> B2"
req POST /v1/turns "{\"ns\":\"b\",\"user\":\"$SECRET what is the vault code?\",\"assistant\":\"$SECRET it is 1234\"}"
expect_code 201 "setup: a turn in B"
req POST /v1/memories '{"ns":"a","content":"a note of A about the vault"}'
expect_code 201 "setup: A1"
A1=$(field id)
# An id that exists nowhere: 403 must not depend on existence.
GHOST=01900000-0000-7000-8000-00000000dead

# B as it is, to compare with at the end.
snapshot() {
  local out=$1
  AUTH=$KEY_ALL
  {
    req GET "/v1/memories?ns=b&limit=1000"; echo "$CODE $BODY"
    for id in "$B1" "$B2"; do
      req GET "/v1/memories/$id?ns=b"; echo "$CODE $BODY"
      req GET "/v1/memories/$id/history?ns=b"; echo "$CODE $BODY"
      req GET "/v1/memories/$id/relationships?ns=b"; echo "$CODE $BODY"
    done
  } | sed -E 's/"accessed_ms":[0-9]+//g' >"$out"
}
snapshot "$T/before"

# ---------------------------------------------------- the table (KEY_A)
# METHOD|PATH|BODY|ACCEPT — every route that takes a namespace, with ns b
# (and a few other spellings of a namespace KEY_A does not have).
ROUTES=$(cat <<EOF
POST|/v1/memories|{"ns":"b","content":"planted by A"}|
POST|/v1/memories|{"ns":"b","content":"planted by A","id":"$GHOST"}|
POST|/v1/memories/batch|{"ns":"b","memories":[{"content":"planted by A"}]}|
GET|/v1/memories/$B1?ns=b||
GET|/v1/memories/$GHOST?ns=b||
GET|/v1/memories/$A1?ns=b||
PATCH|/v1/memories/$B1|{"ns":"b","content":"overwritten by A"}|
PATCH|/v1/memories/$GHOST|{"ns":"b","importance":0.1}|
DELETE|/v1/memories/$B1?ns=b||
DELETE|/v1/memories/$GHOST?ns=b||
GET|/v1/memories?ns=b||
GET|/v1/memories?ns=b&limit=1000&after=$B1||
GET|/v1/memories/$B1/history?ns=b||
GET|/v1/memories/$GHOST/history?ns=b||
GET|/v1/memories/$B1/relationships?ns=b||
POST|/v1/relationships|{"ns":"b","source":"$B2","target":"$B1","kind":"stolen"}|
POST|/v1/relationships|{"ns":"b","source":"$A1","target":"$B1","kind":"bridge"}|
DELETE|/v1/relationships?ns=b&source=$B1&target=$B2&kind=related||
GET|/v1/memories/$B1/traverse?ns=b||
GET|/v1/memories/$B1/traverse?ns=b&depth=10&limit=1000||
POST|/v1/search|{"ns":"b","query":"vault code"}|
POST|/v1/search|{"ns":"b","query":"vault code","limit":1000}|application/x-ndjson
POST|/v1/context|{"ns":"b","message":"what is the vault code?"}|
POST|/v1/turns|{"ns":"b","user":"planted by A","assistant":"planted reply"}|
GET|/v1/memories?ns=%62||
GET|/v1/memories?ns=B||
GET|/v1/memories?ns=b%20||
GET|/v1/memories?ns=a%2Cb||
GET|/v1/memories?ns=*||
POST|/v1/search|{"ns":"*","query":"vault"}|
POST|/v1/search|{"ns":"a\\u0000b","query":"vault"}|
EOF
)

AUTH=$KEY_A
rows=0
while IFS='|' read -r method path body accept; do
  [ -n "$method" ] || continue
  rows=$((rows + 1))
  what="$method $path ${body:+$body }${accept:+(Accept: $accept)}"
  req "$method" "$path" "$body" "$accept"
  # A namespace that is not a valid name may be refused as invalid (400);
  # everything else must be forbidden.
  case $body$path in
    *'\u0000'*) [ "$CODE" = 400 ] || [ "$CODE" = 403 ] && pass || fail "$what: status $CODE; body: $BODY" ;;
    *) expect_code 403 "$what"
       expect_body '"code":"forbidden"' "$what: the forbidden code" ;;
  esac
  expect_no_body "$SECRET" "$what: no data of B"
  expect_no_body "planted" "$what: nothing echoed"
done <<<"$ROUTES"
[ "$rows" -ge 31 ] && pass || fail "the table has $rows rows"

# The key's own namespace works on the same routes: the 403s were about B.
req GET "/v1/memories?ns=a"
expect_code 200 "KEY_A lists a"
expect_no_body "$SECRET" "a's list holds nothing of B"
req POST /v1/search '{"ns":"a","query":"vault"}'
expect_code 200 "KEY_A searches a"
expect_no_body "$SECRET" "a's search finds nothing of B"
req POST /v1/search '{"ns":"a","query":"vault"}' application/x-ndjson
expect_code 200 "KEY_A streams a search of a"
expect_no_body "$SECRET" "a's streamed search finds nothing of B"
req POST /v1/context '{"ns":"a","message":"the vault code"}'
expect_code 200 "KEY_A injects context from a"
expect_no_body "$SECRET" "a's context holds nothing of B"
# Naming a memory of B from namespace a: not found, and nothing of it.
req GET "/v1/memories/$B1?ns=a"
expect_code 404 "B1 looked up in a"
expect_no_body "$SECRET" "B1 looked up in a: no data"
req GET "/v1/memories/$B1/traverse?ns=a"
expect_no_body "$SECRET" "traverse from B1 in a: no data"
req GET "/v1/memories/$A1/traverse?ns=a&depth=10"
expect_code 200 "traverse from A1"
expect_no_body "$SECRET" "traverse from A1 does not reach B"
req POST /v1/relationships "{\"ns\":\"a\",\"source\":\"$A1\",\"target\":\"$B1\",\"kind\":\"bridge\"}"
[ "${CODE:0:1}" = 4 ] && pass || fail "linking A1 to B1 from a: status $CODE; body: $BODY"
expect_no_body "$SECRET" "linking A1 to B1: no data"
req PATCH "/v1/memories/$B1" '{"ns":"a","content":"overwritten by A"}'
[ "${CODE:0:1}" = 4 ] && pass || fail "updating B1 from a: status $CODE; body: $BODY"
req DELETE "/v1/memories/$B1?ns=a"
[ "${CODE:0:1}" = 4 ] && pass || fail "deleting B1 from a: status $CODE; body: $BODY"

# ------------------------------------------------ mem0 routes (KEY_A)
# The mem0-compatible API files a user's memories in the namespace
# "user:NAME" (agent:, app:, run: likewise); KEY_A has user alice, and bob
# is mapped to namespaces it does not have. Every mem0 route that names an
# entity answers 403 for bob, alone or in any alternative of a filter.
MEM0_ROUTES=$(cat <<EOF
POST|/v3/memories/add/|{"messages":[{"role":"user","content":"planted by A"}],"user_id":"bob"}|
POST|/v3/memories/add/|{"messages":"planted by A","user_id":"bob","agent_id":"alice"}|
POST|/v3/memories/add/|{"messages":"planted by A","agent_id":"bob"}|
POST|/v3/memories/add/|{"messages":"planted by A","run_id":"b"}|
POST|/v3/memories/add/|{"messages":"planted by A","app_id":"bob"}|
POST|/v3/memories/search/|{"query":"vault code","filters":{"user_id":"bob"}}|
POST|/v3/memories/search/|{"query":"vault code","user_id":"bob"}|
POST|/v3/memories/search/|{"query":"vault code","filters":{"OR":[{"user_id":"alice"},{"user_id":"bob"}]}}|
POST|/v3/memories/search/|{"query":"vault code","filters":{"user_id":{"in":["alice","bob"]}}}|
POST|/v3/memories/search/|{"query":"vault code","filters":{"AND":[{"user_id":"bob"},{"agent_id":"*"}]}}|
POST|/v3/memories/|{"filters":{"user_id":"bob"}}|
POST|/v3/memories/?page=1&page_size=1000|{"filters":{"OR":[{"user_id":"bob"}]}}|
DELETE|/v1/memories/?user_id=bob||
DELETE|/v1/memories/?user_id=bob&agent_id=*||
DELETE|/v2/entities/user/bob/||
GET|/v1/memories?ns=user:bob||
POST|/v1/search|{"ns":"user:bob","query":"vault code"}|
EOF
)
# By id, the mem0 routes take no namespace: a memory of another tenant is
# answered exactly like one that does not exist (404), so that an id tells
# nothing — the same rule as the 403s, which never depend on existence.
MEM0_BY_ID=$(cat <<EOF
GET|/v1/memories/ID/|
PUT|/v1/memories/ID/|{"text":"overwritten by A"}
DELETE|/v1/memories/ID/|
GET|/v1/memories/ID/history/|
EOF
)

AUTH=$KEY_ALL
req POST /v3/memories/add/ "{\"messages\":[{\"role\":\"user\",\"content\":\"$SECRET bob's vault code is 4321\"}],\"user_id\":\"bob\"}"
expect_code 200 "setup: a mem0 memory of bob"
BOB1=$(field id)
req POST /v3/memories/add/ '{"messages":"alice keeps a note about the vault","user_id":"alice"}'
expect_code 200 "setup: a mem0 memory of alice"
req POST /v3/memories/ '{"filters":{"user_id":"bob"}}'
expect_body "$SECRET" "setup: the admin sees bob's memory"
BOB_BEFORE=$(sed -E 's/"accessed_ms":[0-9]+//g' <<<"$BODY")

AUTH=$KEY_A
mem0_rows=0
while IFS='|' read -r method path body accept; do
  [ -n "$method" ] || continue
  mem0_rows=$((mem0_rows + 1))
  what="mem0: $method $path ${body:+$body}"
  req "$method" "$path" "$body" "$accept"
  expect_code 403 "$what"
  expect_body '"code":"forbidden"' "$what: the forbidden code"
  expect_no_body "$SECRET" "$what: no data of bob"
  expect_no_body "planted" "$what: nothing echoed"
done <<<"$MEM0_ROUTES"
while IFS='|' read -r method path body; do
  [ -n "$method" ] || continue
  mem0_rows=$((mem0_rows + 1))
  req "$method" "${path/ID/$GHOST}" "$body"
  ghost_code=$CODE
  ghost_body=${BODY//$GHOST/ID}
  req "$method" "${path/ID/$BOB1}" "$body"
  what="mem0: $method ${path/ID/(bob\'s memory)}"
  expect_code 404 "$what"
  if [ "$CODE" = "$ghost_code" ] && [ "${BODY//$BOB1/ID}" = "$ghost_body" ]; then
    pass
  else
    fail "$what: answered unlike a memory that does not exist: $CODE $BODY vs $ghost_code $ghost_body"
  fi
  expect_no_body "$SECRET" "$what: no data of bob"
done <<<"$MEM0_BY_ID"
[ "$mem0_rows" -ge 21 ] && pass || fail "the mem0 table has $mem0_rows rows"

# Alice, KEY_A's own user, works on the same routes.
req POST /v3/memories/search/ '{"query":"vault","filters":{"user_id":"alice"}}'
expect_code 200 "KEY_A searches alice"
expect_body "alice keeps a note" "alice's search finds her memory"
expect_no_body "$SECRET" "alice's search finds nothing of bob"
req POST /v3/memories/ '{"filters":{"user_id":"alice"}}'
expect_code 200 "KEY_A lists alice"
expect_no_body "$SECRET" "alice's list holds nothing of bob"

AUTH=$KEY_ALL
req POST /v3/memories/ '{"filters":{"user_id":"bob"}}'
if [ "$(sed -E 's/"accessed_ms":[0-9]+//g' <<<"$BODY")" = "$BOB_BEFORE" ]; then
  pass
else
  fail "bob's memories changed: $BOB_BEFORE -> $BODY"
fi

# ------------------------------------------------- B is as it was
snapshot "$T/after"
if cmp -s "$T/before" "$T/after"; then
  pass
else
  fail "namespace B changed: $(diff "$T/before" "$T/after" | head -20)"
fi
AUTH=$KEY_ALL
req GET "/v1/memories?ns=b&limit=1000"
expect_no_body "planted" "nothing of A's was written to B"
expect_no_body "overwritten" "nothing of B was overwritten"

# ----------------------------------------------------------- the end
server_stop
# The access log holds no key.
if grep -qF -e "$KEY_A" -e "$KEY_ALL" "$T/server.log"; then
  fail "a key is in the server's log"
else
  pass
fi

echo "http_isolation: $passed passed, $failed failed ($rows native rows, ${mem0_rows:-0} mem0 rows)"
if [ "$failed" -eq 0 ]; then
  cd /
  rm -rf "$T"
  exit 0
fi
echo "http_isolation: scratch folder kept: $T" >&2
exit 1

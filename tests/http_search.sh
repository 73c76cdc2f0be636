#!/usr/bin/env bash
# http_search.sh — engram serve's search, context and turn routes end to end
# over HTTP: ranked search as JSON (ranking, limit, types, min_relevance,
# namespaces), the same search streamed as NDJSON (one line per memory and
# a final line), context injection (the memory section and its fields),
# memorizing a turn (then found by search), and the validation of every
# field (400 naming it; a rejected turn writes nothing). Ends with a
# graceful SIGTERM that must exit 0.
#
#   bash tests/http_search.sh /path/to/engram
#
# Needs curl. ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test
# works in a fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/http_search.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
command -v curl >/dev/null || { echo "http_search: curl is required" >&2; exit 1; }
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/http_search.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS ENGRAM_LISTEN ENGRAM_KEYS
DB=$T/search.db

source "$HERE/common/cli_lib.sh"
source "$HERE/common/http_lib.sh"

# ------------------------------------------------- memories, then the server
{
  echo '{"ns":"kb","type":"semantic","content":"Ada is allergic to peanuts"}'
  echo '{"ns":"kb","type":"episodic","content":"Ada ate a cookie with peanuts at the fair and felt sick for the rest of the afternoon"}'
  echo '{"ns":"kb","type":"procedural","content":"To avoid peanuts, read every label twice"}'
  echo '{"ns":"kb","type":"working","content":"peanuts peanuts peanuts"}'
  echo '{"ns":"kb","type":"semantic","content":"The capital of Portugal is Lisbon"}'
  echo '{"ns":"kb","type":"semantic","content":"Der Käse heißt Gruyère; ça coûte 12 €"}'
  for i in $(seq 40); do
    echo "{\"ns\":\"kb\",\"type\":\"episodic\",\"content\":\"weather note $i: rain in the morning\"}"
  done
  echo '{"ns":"other","type":"semantic","content":"peanuts are legumes, not nuts"}'
} >"$T/memories.jsonl"
run e import "$T/memories.jsonl"
expect_rc 0 "import the memories"

KEY_ALL=all-namespaces-key-0123456789
KEY_KB=kb-only-key-0123456789
printf '%s *\n%s kb turns\n' "$KEY_ALL" "$KEY_KB" >"$T/keys"

AUTH=$KEY_KB
server_start "$DB" --keys "$T/keys"

HEADERS=
# post PATH JSON [ACCEPT]: CODE, BODY and HEADERS of the response.
post() {
  local args=(-s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X POST
              -H "Authorization: Bearer $AUTH"
              -H 'Content-Type: application/json' --data-binary "$2")
  [ $# -ge 3 ] && args+=(-H "Accept: $3")
  CODE=$(curl "${args[@]}" "$BASE$1") || CODE=000
  BODY=$(cat "$T/body")
  HEADERS=$(cat "$T/headers")
}
# stream JSON: the search as NDJSON.
stream() { post /v1/search "$1" application/x-ndjson; }
get() {
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' \
    -H "Authorization: Bearer $AUTH" "$BASE$1") || CODE=000
  BODY=$(cat "$T/body")
}
expect_eq() {
  if [ "$1" = "$2" ]; then pass; else fail "$3: [$1], expected [$2]"; fi
}
# values NAME: the values of "NAME" (strings without quotes), in order.
values() {
  grep -oE "\"$1\":(\"[^\"]*\"|[-0-9.eE+]+)" <<<"$BODY" | cut -d: -f2- | tr -d '"' || true
}
ids() { grep -oE '"id":"[0-9a-f-]{36}"' <<<"$BODY" | cut -d'"' -f4 || true; }
# descending WHAT: the relevances in BODY never increase.
descending() {
  if values relevance | awk 'NR > 1 && $1 > prev { bad = 1 } { prev = $1 } END { exit bad }'; then
    pass
  else
    fail "$1: relevances not in descending order: $(values relevance | tr '\n' ' ')"
  fi
}
# in_unit WHAT: every relevance is in [0,1].
in_unit() {
  if values relevance | awk '$1 < 0 || $1 > 1 { bad = 1 } END { exit bad }'; then
    pass
  else
    fail "$1: a relevance outside [0,1]: $(values relevance | tr '\n' ' ')"
  fi
}
# error CODE FIELD WHAT: a 400 (or CODE) naming FIELD in the JSON error shape.
error() {
  expect_code "$1" "$3"
  expect_body '{"error":{"code":' "$3: the error shape"
  expect_body "'$2'" "$3: names the field"
}

get /healthz
expect 200 '"status":"ok"' "healthz"

# ---------------------------------------------------------- search (JSON)
post /v1/search '{"ns":"kb","query":"peanuts"}'
expect 200 '"timed_out":false' "search"
expect_body '"failed":0' "search reports failed items"
grep -qi '^content-type: application/json' <<<"$HEADERS" && pass || fail "search: content-type: $HEADERS"
expect_eq "$(count relevance)" 4 "search finds the four peanut memories of kb"
expect_no_body "legumes" "search stays in its namespace"
expect_no_body '"ns":"other"' "no memory of another namespace"
descending "search ranks by relevance"
in_unit "search relevances"
for f in id ns type content importance metadata created_ms updated_ms accessed_ms content_hash relevance; do
  expect_body "\"$f\":" "a result has $f"
done
expect_eq "$(values content | head -1)" "peanuts peanuts peanuts" "the densest match ranks first"
ALL_IDS=$(ids)
ALL_RELS=$(values relevance)

post /v1/search '{"ns":"kb","query":"peanuts","limit":2}'
expect_code 200 "search with a limit"
expect_eq "$(count relevance)" 2 "limit 2"
expect_eq "$(ids)" "$(head -2 <<<"$ALL_IDS")" "limit keeps the best two, in order"

post /v1/search '{"ns":"kb","query":"weather"}'
expect_eq "$(count relevance)" 10 "the default limit is 10"
post /v1/search '{"ns":"kb","query":"weather rain","limit":1000}'
expect_eq "$(count relevance)" 40 "limit 1000 gets every match"

post /v1/search '{"ns":"kb","query":"peanuts","types":["semantic"]}'
expect_code 200 "search with types"
expect_eq "$(values content)" "Ada is allergic to peanuts" "types semantic"
post /v1/search '{"ns":"kb","query":"peanuts","types":["procedural","working"]}'
expect_eq "$(values type | sort | tr '\n' ' ')" "procedural working " "types procedural and working"

# The vector strategy: no word in common ("peanut", a plural's stem cut
# short), character n-grams in common; an unknown strategy is refused.
post /v1/search '{"ns":"kb","query":"penuts","strategy":"vector","limit":3}'
expect_code 200 "vector search"
expect_eq "$(count relevance)" 3 "vector search: limit 3"
descending "vector search ranks by cosine"
in_unit "vector search relevances"
expect_body 'peanut' "vector search finds peanuts from a typo"
post /v1/search '{"ns":"kb","query":"penuts","strategy":"lexical"}'
expect 200 '"results":[]' "the typo finds nothing lexically"
post /v1/search '{"ns":"kb","query":"peanuts","strategy":"vectors"}'
error 400 strategy "an unknown search strategy"

post /v1/search '{"ns":"kb","query":"peanuts","min_relevance":1}'
expect 200 '"results":[]' "min_relevance 1 keeps nothing"
MID=$(awk 'NR == 1 { hi = $1 } { lo = $1 } END { printf "%.6f", (hi + lo) / 2 }' <<<"$ALL_RELS")
post /v1/search "{\"ns\":\"kb\",\"query\":\"peanuts\",\"min_relevance\":$MID}"
n=$(count relevance)
if [ "$n" -ge 1 ] && [ "$n" -lt 4 ]; then pass; else fail "min_relevance $MID kept $n of 4"; fi
if values relevance | awk -v m="$MID" '$1 < m { bad = 1 } END { exit bad }'; then pass; else fail "min_relevance $MID: $BODY"; fi
post /v1/search '{"ns":"kb","query":"peanuts","min_relevance":0}'
expect_eq "$(count relevance)" 4 "min_relevance 0 keeps everything"

post /v1/search '{"ns":"kb","query":""}'
expect 200 '"results":[]' "an empty query finds nothing, without an error"
post /v1/search '{"ns":"kb","query":"   ?! "}'
expect 200 '"results":[]' "a query without a word"
post /v1/search '{"ns":"kb","query":"\"NEAR(peanut* ^ada) : - AND OR"}'
expect_code 200 "query syntax is plain text"
post /v1/search '{"ns":"kb","query":"Käse Gruyère"}'
expect 200 'Der Käse heißt Gruyère' "a non-ASCII query"
post /v1/search '{"ns":"kb","query":"submarine"}'
expect 200 '"results":[]' "nothing relevant"
post /v1/search '{"ns":"kb","query":"peanuts","timeout_ms":60000,"limit":1000,"types":null}'
expect_eq "$(count relevance)" 4 "every option at its bound (null: absent)"

# ------------------------------------------------------- search: invalid
post /v1/search '{"query":"peanuts"}'
error 400 ns "search without ns"
post /v1/search '{"ns":"kb"}'
error 400 query "search without query"
post /v1/search '{"ns":"kb","query":5}'
error 400 query "a query that is a number"
for v in 0 1001 1000000000 -1 2.5 '"5"' true; do
  post /v1/search "{\"ns\":\"kb\",\"query\":\"x\",\"limit\":$v}"
  error 400 limit "limit $v"
done
for v in '"episodic"' '[]' '["nope"]' '[1]' '{}'; do
  post /v1/search "{\"ns\":\"kb\",\"query\":\"x\",\"types\":$v}"
  error 400 types "types $v"
done
for v in 1.5 -0.1 '"high"'; do
  post /v1/search "{\"ns\":\"kb\",\"query\":\"x\",\"min_relevance\":$v}"
  error 400 min_relevance "min_relevance $v"
done
for v in 0 60001 1000000000000 -5 '"1s"'; do
  post /v1/search "{\"ns\":\"kb\",\"query\":\"x\",\"timeout_ms\":$v}"
  error 400 timeout_ms "timeout_ms $v"
done
post /v1/search '{"ns":"kb","query":"x","limt":3}'
error 400 limt "a misspelt field"
expect_body "expected: ns, query, limit, types, min_relevance, timeout_ms" "the known fields are listed"
post /v1/search '{"ns":"kb","query":'
expect 400 '"malformed_json"' "malformed JSON"
post /v1/search '["kb","peanuts"]'
expect 400 '"malformed_json"' "a body that is not an object"
post /v1/search ''
error 400 ns "an empty body"
post /v1/search '{"ns":"","query":"x"}'
expect 400 '"invalid"' "an empty namespace"
post /v1/search '{"ns":"other","query":"peanuts"}'
expect 403 "may not use namespace 'other'" "a namespace the key may not use"
post /v1/search '{"ns":"other","query":"peanuts","limit":0}'
expect_code 403 "the namespace is checked first"
AUTH=nope
post /v1/search '{"ns":"kb","query":"peanuts"}'
expect_code 401 "a wrong key"
AUTH=$KEY_ALL
post /v1/search '{"ns":"other","query":"peanuts"}'
expect 200 'legumes' "a key for every namespace"
AUTH=$KEY_KB
get /v1/search
expect_code 405 "GET /v1/search"

# --------------------------------------------------------- search (NDJSON)
stream '{"ns":"kb","query":"peanuts"}'
expect_code 200 "stream"
grep -qi '^content-type: application/x-ndjson' <<<"$HEADERS" && pass || fail "stream: content-type: $HEADERS"
if ! grep -qv '^{.*}$' <<<"$BODY"; then pass; else fail "stream: not one JSON object a line: $BODY"; fi
expect_eq "$(grep -c . <<<"$BODY")" 5 "four memory lines and the final line"
expect_eq "$(tail -1 <<<"$BODY")" '{"done":true,"status":"ok","count":4,"failed":0}' "the final line"
expect_eq "$(ids)" "$ALL_IDS" "the stream has the ranking of the JSON search"
expect_eq "$(head -4 <<<"$BODY" | grep -c '"relevance":')" 4 "every memory line has its relevance"

stream '{"ns":"kb","query":"peanuts","limit":2}'
expect_eq "$(grep -c . <<<"$BODY")" 3 "stream with limit 2"
expect_eq "$(tail -1 <<<"$BODY")" '{"done":true,"status":"ok","count":2,"failed":0}' "limit 2: the final line"

stream '{"ns":"kb","query":"weather rain","limit":5000}'
expect_code 200 "a stream may ask for more than 1000"
expect_eq "$(grep -c '"content":"weather note' <<<"$BODY")" 40 "a stream of several chunks"
expect_eq "$(tail -1 <<<"$BODY")" '{"done":true,"status":"ok","count":40,"failed":0}' "several chunks: the final line"
expect_eq "$(ids | sort -u | wc -l | tr -d ' ')" 40 "no memory twice"

stream '{"ns":"kb","query":"weather","types":["semantic"]}'
expect_eq "$BODY" '{"done":true,"status":"ok","count":0,"failed":0}' "a stream with no match has only the final line"
stream '{"ns":"kb","query":""}'
expect_eq "$BODY" '{"done":true,"status":"ok","count":0,"failed":0}' "a stream of an empty query"

stream '{"ns":"kb","query":"x","limit":1000001}'
error 400 limit "a stream's limit has a bound too"
grep -qi '^content-type: application/json' <<<"$HEADERS" && pass || fail "an invalid stream request gets a JSON error: $HEADERS"
stream '{"ns":"other","query":"peanuts"}'
expect_code 403 "stream: a namespace the key may not use"
post /v1/search '{"ns":"kb","query":"peanuts"}' 'application/json, application/x-ndjson;q=0.9'
expect_body '{"done":true' "an Accept that lists NDJSON streams"

# ----------------------------------------------------------------- context
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"Is Ada allergic to peanuts?"}'
expect 200 '"text":"## Relevant memories\n' "context"
expect_body "] Ada is allergic to peanuts" "context holds the memory"
expect_body "[semantic, " "context shows type and time"
for f in text relevance count ids timed_out failed elapsed_ms; do
  expect_body "\"$f\":" "context has $f"
done
expect_body '"timed_out":false' "context in time"
expect_body '"failed":0' "context: no failed item"
expect_no_body "legumes" "context stays in its namespace"
n=$(grep -o '"count":[0-9]*' <<<"$BODY" | cut -d: -f2)
if [ "$n" -ge 1 ] && [ "$n" -le 10 ]; then pass; else fail "context count $n"; fi
expect_eq "$(ids | wc -l)" 0 "context ids are a plain array"
expect_eq "$(grep -oE '"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"' <<<"$BODY" | wc -l | tr -d ' ')" "$n" "one id per memory used"
if values relevance | awk '$1 <= 0 || $1 > 1 { bad = 1 } END { exit bad }'; then pass; else fail "context relevance: $BODY"; fi

post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"peanuts","headers":false,"max_memories":1,"strategy":"lexical"}'
expect_code 200 "context with options"
expect_no_body "## Relevant memories" "headers false"
expect_body '"count":1,' "max_memories 1"
expect_body '"text":"- [working, ' "max_memories 1 keeps the best memory"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"Ada peanuts","max_memory_chars":5}'
expect_body "[...cut]" "max_memory_chars cuts long memories"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"peanuts","types":["procedural"]}'
expect_body '"count":1,' "context with types"
expect_body "read every label twice" "context types procedural"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"peanuts","min_relevance":1}'
expect 200 '"text":"","relevance":0.0,"count":0,"ids":[]' "min_relevance 1: nothing"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"submarine"}'
expect 200 '"count":0' "context with nothing relevant"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":""}'
expect 200 '"count":0' "context of an empty message"
post /v1/context '{"ns":"kb","message":"peanuts"}'
expect 200 '"timed_out":' "context with the default deadline (250 ms)"
post /v1/context '{"ns":"kb","message":"peanuts","timeout_ms":60000,"max_memories":1000,"max_memory_chars":100000,"strategy":"lexical"}'
expect 200 '"count":4' "context options at their bounds"
post /v1/context '{"ns":"kb","message":"peanuts","timeout_ms":60000,"strategy":"hybrid"}'
expect 200 '"count":4' "hybrid context: facts take no neighbours"
post /v1/context '{"ns":"kb","message":"peanuts","strategy":"vector"}'
expect 400 "strategy" "an unknown strategy"

post /v1/context '{"message":"x"}'
error 400 ns "context without ns"
post /v1/context '{"ns":"kb"}'
error 400 message "context without message"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":["x"]}'
error 400 message "a message that is an array"
for v in 0 1001 -3 1.5; do
  post /v1/context "{\"ns\":\"kb\",\"message\":\"x\",\"max_memories\":$v}"
  error 400 max_memories "max_memories $v"
done
for v in 0 60001 1000000000000; do
  post /v1/context "{\"ns\":\"kb\",\"message\":\"x\",\"timeout_ms\":$v}"
  error 400 timeout_ms "context timeout_ms $v"
done
for v in 0 100001; do
  post /v1/context "{\"ns\":\"kb\",\"message\":\"x\",\"max_memory_chars\":$v}"
  error 400 max_memory_chars "max_memory_chars $v"
done
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"x","headers":"no"}'
error 400 headers "headers that is not a boolean"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"x","min_relevance":2}'
error 400 min_relevance "context min_relevance 2"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"x","types":["fact"]}'
error 400 types "context types"
post /v1/context '{"ns":"kb","timeout_ms":10000,"message":"x","max":3}'
error 400 max "context: an unknown field"
post /v1/context '{"ns":"other","timeout_ms":10000,"message":"peanuts"}'
expect_code 403 "context: a namespace the key may not use"

# ------------------------------------------------------------------- turns
post /v1/turns '{"ns":"turns","user":"My hamster is called Biscuit","assistant":"Biscuit is a fine name for a hamster."}'
expect_code 201 "a turn"
USER_ID=$(grep -o '"user_id":"[^"]*"' <<<"$BODY" | cut -d'"' -f4)
REPLY_ID=$(grep -o '"assistant_id":"[^"]*"' <<<"$BODY" | cut -d'"' -f4)
EXCHANGE_ID=$(grep -o '"exchange_id":"[^"]*"' <<<"$BODY" | cut -d'"' -f4)
for id in "$USER_ID" "$REPLY_ID" "$EXCHANGE_ID"; do
  if grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$id"; then pass; else fail "turn id [$id] in $BODY"; fi
done
post /v1/search '{"ns":"turns","query":"hamster Biscuit"}'
expect_eq "$(count relevance)" 3 "the turn is three memories"
expect_eq "$(ids | sort | tr '\n' ' ')" "$(printf '%s\n' "$USER_ID" "$REPLY_ID" "$EXCHANGE_ID" | sort | tr '\n' ' ')" "search finds the turn's memories"
expect_body '"content":"My hamster is called Biscuit","importance":0.5,"metadata":{"role":"user"}' "the user's side"
expect_body '"metadata":{"role":"exchange"}' "the exchange"
post /v1/search '{"ns":"turns","query":"hamster","types":["working"]}'
expect_body '"content":"user: My hamster is called Biscuit\nassistant: Biscuit is a fine name for a hamster."' "the exchange holds both sides"
post /v1/context '{"ns":"turns","timeout_ms":10000,"message":"what is my hamster called?"}'
expect_body "My hamster is called Biscuit" "context finds the turn"

post /v1/turns '{"ns":"turns","user":"","assistant":"zebra reply"}'
error 400 user "an empty user turn"
post /v1/turns '{"ns":"turns","user":"zebra question"}'
error 400 assistant "a turn without the reply"
post /v1/turns '{"ns":"turns","user":"zebra question","assistant":""}'
error 400 assistant "an empty reply"
post /v1/turns '{"ns":"turns","user":7,"assistant":"zebra reply"}'
error 400 user "a user turn that is a number"
post /v1/turns '{"user":"zebra question","assistant":"zebra reply"}'
error 400 ns "a turn without ns"
post /v1/turns '{"ns":"turns","user":"zebra question","assistant":"zebra reply","extra":1}'
error 400 extra "a turn with an unknown field"
big=$(head -c 70000 /dev/zero | tr '\0' 'z')
post /v1/turns "{\"ns\":\"turns\",\"user\":\"zebra $big\",\"assistant\":\"zebra reply\"}"
expect 413 '"too_large"' "a turn over the content limit"
expect_body "'user'" "the size error names the fields"
post /v1/search '{"ns":"turns","query":"zebra"}'
expect 200 '"results":[]' "no rejected turn wrote anything"
post /v1/turns '{"ns":"other","user":"a","assistant":"b"}'
expect_code 403 "turns: a namespace the key may not use"

# -------------------------------------------------------------- metrics
get /metrics
for rs in search:200 search:400 context:200 turns:201 turns:413; do
  expect_body "route=\"${rs%:*}\",status=\"${rs#*:}\"" "metrics count $rs"
done
expect_body 'engram_context_timed_out_total 0' "no context timed out"
expect_body 'engram_streams_open 0' "no stream left open"
expect_body 'engram_queries_running 0' "no query left running"

# ------------------------------------------------------- graceful stop
server_stop

echo "http_search: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
  cd /
  rm -rf "$T"
  exit 0
fi
echo "http_search: scratch folder kept: $T" >&2
exit 1

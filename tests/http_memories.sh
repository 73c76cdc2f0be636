#!/usr/bin/env bash
# http_memories.sh — engram serve's native memory and relationship routes
# end to end over HTTP: every route, its status codes and bodies, the
# validation of every field and parameter (400 naming it), namespaces and
# API keys (403), unknown memories (404), duplicate ids (409), and that a
# rejected request — a batch above all — writes nothing. Ends with a
# graceful SIGTERM that must exit 0.
#
#   bash tests/http_memories.sh /path/to/engram
#
# Needs curl. ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test
# works in a fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/http_memories.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
command -v curl >/dev/null || { echo "http_memories: curl is required" >&2; exit 1; }
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/http_memories.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS ENGRAM_LISTEN ENGRAM_KEYS
DB=$T/main.db

source "$HERE/common/cli_lib.sh"
source "$HERE/common/http_lib.sh"

# ------------------------------------------------------------ the server
KEY_ALL=all-namespaces-key-0123456789
KEY_ONE=one-namespace-key-0123456789
printf '%s *\n%s only\n' "$KEY_ALL" "$KEY_ONE" >"$T/keys"

AUTH=$KEY_ALL
server_start "$DB" --keys "$T/keys"

# req METHOD PATH [JSON]: CODE and BODY of the response.
req() {
  local args=(-s -o "$T/body" -w '%{http_code}' -X "$1"
              -H "Authorization: Bearer $AUTH")
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  CODE=$(curl "${args[@]}" "$BASE$2") || CODE=000
  BODY=$(cat "$T/body")
}
# req_file METHOD PATH FILE: the body from a file (bytes as they are).
req_file() {
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$1" \
    -H "Authorization: Bearer $AUTH" -H 'Content-Type: application/json' \
    --data-binary "@$3" "$BASE$2") || CODE=000
  BODY=$(cat "$T/body")
}
# ids: every memory id in BODY, in order, one a line.
ids() { grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}' <<<"$BODY" || true; }
is_id() {
  if grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$1"; then
    pass
  else
    fail "$2: [$1] is not a memory id"
  fi
}
# in_ns NS: how many memories the namespace holds (at most 1000).
in_ns() {
  req GET "/v1/memories?ns=$1&limit=1000"
  count content_hash
}

req GET /healthz
expect 200 '"status":"ok"' "healthz"

# ------------------------------------------------------------------ keys
AUTH=
req GET "/v1/memories?ns=a"
expect 401 '"code":"unauthorized"' "no key"
AUTH=not-a-key-at-all-0000
req GET "/v1/memories?ns=a"
expect_code 401 "a wrong key"
AUTH=$KEY_ONE
req POST /v1/memories '{"ns":"a","content":"not allowed"}'
expect 403 "may not use namespace 'a'" "a key without the namespace cannot write"
req GET "/v1/memories?ns=a"
expect_code 403 "a key without the namespace cannot list"
req POST /v1/memories '{"ns":"only","content":"allowed"}'
expect_code 201 "a key writes its own namespace"
AUTH=$KEY_ALL

# ------------------------------------------------- POST /v1/memories
req POST /v1/memories '{"ns":"a","content":"the user likes green tea"}'
expect 201 '"deduplicated":false' "create"
A1=$(field id)
is_id "$A1" "create returns an id"
req POST /v1/memories '{"ns":"a","content":"the user likes green tea","dedup":true}'
expect 200 '"deduplicated":true' "create with dedup finds the same content"
expect_body "\"id\":\"$A1\"" "dedup returns the existing id"
req POST /v1/memories '{"ns":"a","content":"the user likes green tea"}'
expect 201 '"deduplicated":false' "create without dedup stores a second copy"
[ "$(field id)" != "$A1" ] && pass || fail "a second copy has its own id"
req POST /v1/memories '{"ns":"a","content":"Paris is the capital of France","type":"semantic","importance":0.7,"metadata":{"source":"atlas","page":12}}'
expect_code 201 "create with every field"
A2=$(field id)
EXPLICIT=01900000-0000-7000-8000-000000000001
req POST /v1/memories "{\"ns\":\"a\",\"content\":\"with my own id\",\"id\":\"$EXPLICIT\"}"
expect 201 "\"id\":\"$EXPLICIT\"" "create with an explicit id"
req POST /v1/memories "{\"ns\":\"a\",\"content\":\"again\",\"id\":\"$EXPLICIT\"}"
expect 409 '"code":"conflict"' "a duplicate explicit id is a conflict"
expect_body "already exists" "the conflict says why"
req POST /v1/memories "{\"ns\":\"other\",\"content\":\"again\",\"id\":\"$EXPLICIT\"}"
expect_code 409 "ids are unique across namespaces"

# Every rejected create leaves the namespace as it was.
before=$(in_ns a)
[ "$before" = 4 ] && pass || fail "namespace a holds 4 memories, not $before"
bad_create() { # JSON FIELD-TEXT WHAT
  req POST /v1/memories "$1"
  expect 400 "$2" "$3"
}
bad_create '{"content":"x"}' "field 'ns' is required" "create without ns"
bad_create '{"ns":5,"content":"x"}' "field 'ns' must be a string" "ns is a number"
bad_create '{"ns":"","content":"x"}' "namespace must be 1-256 bytes" "ns is empty"
bad_create '{"ns":"a"}' "field 'content' is required" "create without content"
bad_create '{"ns":"a","content":""}' "field 'content' must be a non-empty string" "content is empty"
bad_create '{"ns":"a","content":42}' "field 'content' must be a non-empty string" "content is a number"
bad_create '{"ns":"a","content":["x"]}' "field 'content'" "content is an array"
bad_create '{"ns":"a","content":"x","type":"bogus"}' "field 'type' must be episodic, semantic, procedural or working" "type is unknown"
bad_create '{"ns":"a","content":"x","type":3}' "field 'type'" "type is a number"
bad_create '{"ns":"a","content":"x","importance":2}' "field 'importance' must be a number from 0 to 1" "importance 2"
bad_create '{"ns":"a","content":"x","importance":-0.1}' "field 'importance'" "importance -0.1"
bad_create '{"ns":"a","content":"x","importance":"high"}' "field 'importance'" "importance is a string"
bad_create '{"ns":"a","content":"x","importance":true}' "field 'importance'" "importance is a boolean"
bad_create '{"ns":"a","content":"x","metadata":[1,2]}' "field 'metadata' must be a JSON object" "metadata is an array"
bad_create '{"ns":"a","content":"x","metadata":"{}"}' "field 'metadata' must be a JSON object" "metadata is a string"
bad_create '{"ns":"a","content":"x","id":"abc"}' "field 'id' must be a memory id" "id is not a UUID"
bad_create '{"ns":"a","content":"x","id":"01900000-0000-7000-8000-00000000000A"}' "field 'id'" "id in upper case"
bad_create '{"ns":"a","content":"x","id":7}' "field 'id'" "id is a number"
bad_create '{"ns":"a","content":"x","dedup":"yes"}' "field 'dedup' must be true or false" "dedup is a string"
bad_create '{"ns":"a","contnet":"x"}' "unknown field 'contnet'" "a misspelt field"
bad_create 'not json' '"code":"malformed_json"' "the body is not JSON"
bad_create '[1,2]' "the body must be a JSON object" "the body is an array"
bad_create '{"ns":"a","content":"x","ns":"b"}' '"code":"malformed_json"' "a duplicate key"
req POST /v1/memories
expect 400 "field 'ns' is required" "no body at all"
printf '{"ns":"a","content":"bad \xff\xfe bytes"}' >"$T/bad-utf8.json"
req_file POST /v1/memories "$T/bad-utf8.json"
expect 400 '"code":"malformed_json"' "content with invalid UTF-8"
expect_body "unable to decode byte 0xff" "invalid UTF-8 is named"
bad_create '{"ns":"a","content":"lone \ud800 surrogate"}' "invalid Unicode" "content with a lone surrogate"
bad_create '{"ns":"a","content":"nul \u0000 inside"}' '"code":"malformed_json"' "content with a NUL"
{ printf '{"ns":"a","content":"'; head -c 70000 /dev/zero | tr '\0' 'x'; printf '"}'; } >"$T/big.json"
req_file POST /v1/memories "$T/big.json"
expect 413 "the limit is 65536 bytes" "content over the size limit"
after=$(in_ns a)
[ "$after" = "$before" ] && pass || fail "rejected creates wrote something: $before -> $after"

# ----------------------------------------------- GET /v1/memories/:id
req GET "/v1/memories/$A2?ns=a"
expect 200 "\"id\":\"$A2\"" "get"
expect_body '"ns":"a"' "get: ns"
expect_body '"type":"semantic"' "get: type"
expect_body '"content":"Paris is the capital of France"' "get: content"
expect_body '"importance":0.7,' "get: importance as given"
expect_body '"metadata":{"source":"atlas","page":12}' "get: metadata is an object"
for f in created_ms updated_ms accessed_ms; do
  grep -qE "\"$f\":[0-9]{13}" <<<"$BODY" && pass || fail "get: $f is a time in ms: $BODY"
done
grep -qE '"content_hash":"[0-9a-f]{16}"' <<<"$BODY" && pass || fail "get: content_hash is 16 hex: $BODY"
HASH2=$(field content_hash)
req GET "/v1/memories/$A1?ns=a"
expect_body '"type":"episodic"' "the default type is episodic"
expect_body '"importance":0.5,' "the default importance is 0.5"
expect_body '"metadata":{}' "the default metadata is {}"
req GET "/v1/memories/$A2?ns=b"
expect 404 '"code":"not_found"' "get in another namespace"
req GET "/v1/memories/01900000-0000-7000-8000-0000000000ff?ns=a"
expect 404 "no memory 01900000-0000-7000-8000-0000000000ff" "get an unknown id"
req GET "/v1/memories/not-an-id?ns=a"
expect 400 "'not-an-id' in the path is not a memory id" "get a malformed id"
req GET "/v1/memories/$A2"
expect 400 "query parameter 'ns' is required" "get without ns"
req GET "/v1/memories/$A2?ns=%ZZ"
expect 400 "query parameter 'ns' is malformed" "get with a malformed ns"
req GET "/v1/memories/$A2?ns=%FF"
expect 400 "query parameter 'ns' is not valid UTF-8" "get with an ns that is not UTF-8"
req GET "/v1/memories/$A2?ns=a%00b"
expect 400 "query parameter 'ns' is malformed" "get with a NUL in ns"
AUTH=$KEY_ONE
req GET "/v1/memories/$A2?ns=a"
expect_code 403 "get in a namespace the key may not use"
AUTH=$KEY_ALL
req PUT "/v1/memories/$A2?ns=a" '{}'
expect 405 '"code":"method_not_allowed"' "PUT is not a method of a memory"

# --------------------------------------------- PATCH /v1/memories/:id
req PATCH "/v1/memories/$A2" '{"ns":"a","content":"Paris is the capital of France (since 508)","importance":0.9,"metadata":{"checked":true}}'
expect 200 '"content":"Paris is the capital of France (since 508)"' "patch content"
expect_body '"importance":0.9,' "patch importance"
expect_body '"metadata":{"checked":true}' "patch metadata"
expect_body '"type":"semantic"' "patch keeps what it was not given"
[ "$(field content_hash)" != "$HASH2" ] && pass || fail "patch changes the content hash"
req PATCH "/v1/memories/$A2" '{"ns":"a","type":"procedural"}'
expect 200 '"type":"procedural"' "patch only the type"
expect_body '"content":"Paris is the capital of France (since 508)"' "patching the type keeps the content"
req PATCH "/v1/memories/$A2" '{"ns":"a"}'
expect 400 "nothing to change" "patch with nothing to change"
req PATCH "/v1/memories/$A2" '{"ns":"a","importance":1.5}'
expect 400 "field 'importance'" "patch importance 1.5"
req PATCH "/v1/memories/$A2" '{"ns":"a","content":""}'
expect 400 "field 'content'" "patch to empty content"
req PATCH "/v1/memories/$A2" '{"ns":"a","type":"nope"}'
expect 400 "field 'type'" "patch to an unknown type"
req PATCH "/v1/memories/$A2" '{"ns":"a","metadata":1}'
expect 400 "field 'metadata'" "patch metadata to a number"
req PATCH "/v1/memories/$A2" '{"ns":"a","id":"x","content":"y"}'
expect 400 "unknown field 'id'" "patch cannot change the id"
req PATCH "/v1/memories/$A2" '{"content":"y"}'
expect 400 "field 'ns' is required" "patch without ns"
req PATCH "/v1/memories/$A2" '{"ns":"b","content":"y"}'
expect_code 404 "patch in another namespace"
req PATCH "/v1/memories/01900000-0000-7000-8000-0000000000ff" '{"ns":"a","content":"y"}'
expect_code 404 "patch an unknown id"
req GET "/v1/memories/$A2?ns=a"
expect_body '"content":"Paris is the capital of France (since 508)"' "rejected patches changed nothing"
expect_body '"importance":0.9,' "rejected patches left importance"

# --------------------------------------- GET /v1/memories/:id/history
req GET "/v1/memories/$A2/history?ns=a"
expect 200 "\"id\":\"$A2\"" "history"
expect_body '{"event":"add","old_content":null,"new_content":"Paris is the capital of France"' "history: the add"
expect_body '"event":"update","old_content":"Paris is the capital of France","new_content":"Paris is the capital of France (since 508)"' "history: the update"
[ "$(count event)" = 3 ] && pass || fail "history has 3 events: $BODY"
req GET "/v1/memories/01900000-0000-7000-8000-0000000000ff/history?ns=a"
expect_code 404 "history of an unknown id"
req GET "/v1/memories/$A2/history?ns=b"
expect_code 404 "history in another namespace"
req GET "/v1/memories/$A2/history"
expect 400 "query parameter 'ns'" "history without ns"

# ------------------------------------------ DELETE /v1/memories/:id
req DELETE "/v1/memories/$A1?ns=b"
expect_code 404 "delete in another namespace"
req DELETE "/v1/memories/$A1?ns=a"
expect 200 "{\"id\":\"$A1\",\"deleted\":true}" "delete"
req DELETE "/v1/memories/$A1?ns=a"
expect_code 404 "delete twice"
req GET "/v1/memories/$A1?ns=a"
expect_code 404 "a deleted memory is gone"
req GET "/v1/memories/$A1/history?ns=a"
expect 200 '"event":"delete","old_content":"the user likes green tea","new_content":null' "history keeps the delete"
req DELETE "/v1/memories/$A1"
expect 400 "query parameter 'ns'" "delete without ns"
req DELETE "/v1/memories/xyz?ns=a"
expect_code 400 "delete a malformed id"

# ------------------------------------------- POST /v1/memories/batch
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"one"},{"content":"two","type":"working","importance":0.2,"metadata":{"n":2}},{"content":"three","id":"01900000-0000-7000-8000-0000000000b3"}]}'
expect 201 '"deduplicated":[false,false,false]' "batch"
[ "$(ids | wc -l)" = 3 ] && pass || fail "batch returns 3 ids: $BODY"
expect_body '"01900000-0000-7000-8000-0000000000b3"' "batch keeps an explicit id"
B2=$(ids | sed -n 2p)
req GET "/v1/memories/$B2?ns=b"
expect 200 '"type":"working"' "a batch item has its fields"
expect_body '"metadata":{"n":2}' "a batch item has its metadata"
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"one","dedup":true},{"content":"four","dedup":true}]}'
expect 201 '"deduplicated":[true,false]' "batch with dedup"
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"one","dedup":true}]}'
expect 200 '"deduplicated":[true]' "a batch of duplicates only is 200"
before=$(in_ns b)
[ "$before" = 4 ] && pass || fail "namespace b holds 4 memories, not $before"
bad_batch() { # JSON TEXT WHAT
  req POST /v1/memories/batch "$1"
  expect 400 "$2" "$3"
}
bad_batch '{"ns":"b","memories":[{"content":"ok"},{"content":"bad","importance":"high"}]}' "field 'memories[1].importance'" "batch names the bad item"
bad_batch '{"ns":"b","memories":[{"content":"ok"},{"content":"ok2"},{"type":"semantic"}]}' "field 'memories[2].content' is required" "batch item without content"
bad_batch '{"ns":"b","memories":[{"content":"ok"},"text"]}' "field 'memories[1]' must be an object" "batch item not an object"
bad_batch '{"ns":"b","memories":[{"content":"ok","extra":1}]}' "unknown field 'memories[0].extra'" "batch item with an unknown field"
bad_batch '{"ns":"b","memories":[{"content":"ok","id":"nope"}]}' "field 'memories[0].id'" "batch item with a bad id"
bad_batch '{"ns":"b","memories":[]}' "a batch holds 1 to 1000" "an empty batch"
bad_batch '{"ns":"b","memories":{"content":"x"}}' "field 'memories' is required (an array" "memories is an object"
bad_batch '{"ns":"b"}' "field 'memories' is required" "batch without memories"
bad_batch '{"memories":[{"content":"x"}]}' "field 'ns' is required" "batch without ns"
{
  printf '{"ns":"b","memories":['
  for i in $(seq 1001); do
    [ "$i" -gt 1 ] && printf ','
    printf '{"content":"m%d"}' "$i"
  done
  printf ']}'
} >"$T/1001.json"
req_file POST /v1/memories/batch "$T/1001.json"
expect 400 "field 'memories' holds 1001 memories; a batch holds 1 to 1000" "a batch of 1001"
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"new 1"},{"content":"new 2","id":"01900000-0000-7000-8000-0000000000b3"}]}'
expect 409 "memories[1]: a memory with id 01900000-0000-7000-8000-0000000000b3 already exists" "batch with an existing id"
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"new 1","id":"01900000-0000-7000-8000-0000000000c1"},{"content":"new 2","id":"01900000-0000-7000-8000-0000000000c1"}]}'
expect 409 "memories[1]:" "batch with the same id twice"
printf '{"ns":"b","memories":[{"content":"fine"},{"content":"bad \xc3\x28"}]}' >"$T/bad-batch.json"
req_file POST /v1/memories/batch "$T/bad-batch.json"
expect_code 400 "batch with invalid UTF-8 in an item"
{ printf '{"ns":"b","memories":[{"content":"fine"},{"content":"'; head -c 70000 /dev/zero | tr '\0' 'y'; printf '"}]}'; } >"$T/big-batch.json"
req_file POST /v1/memories/batch "$T/big-batch.json"
expect 413 "memories[1]:" "batch with an item over the size limit"
after=$(in_ns b)
[ "$after" = "$before" ] && pass || fail "rejected batches wrote something: $before -> $after"
req GET "/v1/memories/01900000-0000-7000-8000-0000000000c1?ns=b"
expect_code 404 "nothing of a failed batch is stored"
AUTH=$KEY_ONE
req POST /v1/memories/batch '{"ns":"b","memories":[{"content":"x"}]}'
expect_code 403 "batch in a namespace the key may not use"
AUTH=$KEY_ALL

# ------------------------------------------------- GET /v1/memories
req POST /v1/memories/batch '{"ns":"page","memories":[{"content":"p1"},{"content":"p2","type":"semantic"},{"content":"p3"},{"content":"p4","type":"semantic"},{"content":"p5"}]}'
expect_code 201 "batch for paging"
mapfile -t PAGE_IDS < <(ids)
req GET "/v1/memories?ns=page&limit=2"
expect 200 '"content":"p1"' "list page 1"
expect_body '"content":"p2"' "list page 1 has 2"
[ "$(count content_hash)" = 2 ] && pass || fail "list page 1 holds 2: $BODY"
NEXT=$(field next)
[ "$NEXT" = "${PAGE_IDS[1]}" ] && pass || fail "next is the last id of the page: $NEXT"
req GET "/v1/memories?ns=page&limit=2&after=$NEXT"
expect 200 '"content":"p3"' "list page 2"
expect_no_body '"content":"p2"' "page 2 repeats nothing"
NEXT=$(field next)
req GET "/v1/memories?ns=page&limit=2&after=$NEXT"
expect 200 '"content":"p5"' "list page 3"
expect_body '"next":null' "the last page has no next"
[ "$(count content_hash)" = 1 ] && pass || fail "list page 3 holds 1: $BODY"
req GET "/v1/memories?ns=page&limit=5"
expect_body '"next":null' "a page that holds everything has no next"
req GET "/v1/memories?ns=page"
[ "$(count content_hash)" = 5 ] && pass || fail "list without limit: $BODY"
req GET "/v1/memories?ns=page&type=semantic"
[ "$(count content_hash)" = 2 ] && pass || fail "list type=semantic: $BODY"
expect_no_body '"type":"episodic"' "type filter"
req GET "/v1/memories?ns=page&type=semantic,episodic"
[ "$(count content_hash)" = 5 ] && pass || fail "list with two types: $BODY"
req GET "/v1/memories?ns=nobody-here"
expect 200 '{"memories":[],"next":null}' "list an empty namespace"
for l in 0 1001 1000000000 -1 abc 1.5 ''; do
  req GET "/v1/memories?ns=page&limit=$l"
  expect 400 "query parameter 'limit' must be an integer from 1 to 1000" "list limit=$l"
done
req GET "/v1/memories?ns=page&after=bogus"
expect 400 "query parameter 'after' must be a memory id" "list after=bogus"
req GET "/v1/memories?ns=page&type=bogus"
expect 400 "query parameter 'type'" "list type=bogus"
req GET "/v1/memories"
expect 400 "query parameter 'ns' is required" "list without ns"
{
  printf '{"ns":"many","memories":['
  for i in $(seq 60); do
    [ "$i" -gt 1 ] && printf ','
    printf '{"content":"item %d"}' "$i"
  done
  printf ']}'
} >"$T/60.json"
req_file POST /v1/memories/batch "$T/60.json"
expect_code 201 "batch of 60"
req GET "/v1/memories?ns=many"
[ "$(count content_hash)" = 50 ] && pass || fail "the default page is 50"
[ -n "$(field next)" ] && pass || fail "a default page of 60 has a next"
req GET "/v1/memories?ns=many&limit=1000"
[ "$(count content_hash)" = 60 ] && pass || fail "limit=1000 lists 60"

# ------------------------------------------------ relationships
req POST /v1/memories/batch '{"ns":"g","memories":[{"content":"n0"},{"content":"n1"},{"content":"n2"},{"content":"n3"}]}'
expect_code 201 "batch for the graph"
mapfile -t N < <(ids)
link() { # SOURCE TARGET KIND [STRENGTH]
  local s=
  [ $# -ge 4 ] && s=",\"strength\":$4"
  req POST /v1/relationships "{\"ns\":\"g\",\"source\":\"$1\",\"target\":\"$2\",\"kind\":\"$3\"$s}"
}
link "${N[0]}" "${N[1]}" next
expect 201 '"strength":1' "link: strength defaults to 1"
expect_body "\"source\":\"${N[0]}\",\"target\":\"${N[1]}\",\"kind\":\"next\"" "link echoes the relationship"
link "${N[1]}" "${N[2]}" next 0.5
expect 201 '"strength":0.5' "link with a strength"
link "${N[2]}" "${N[3]}" next 0.2
expect_code 201 "link n2-n3"
link "${N[0]}" "${N[1]}" about 0.8
expect_code 201 "a second kind between the same memories"
link "${N[0]}" "${N[1]}" next 2
expect 400 "field 'strength'" "strength 2"
link "${N[0]}" "${N[1]}" next -1
expect 400 "field 'strength'" "strength -1"
link "${N[0]}" "${N[1]}" next '"strong"'
expect 400 "field 'strength'" "strength is a string"
link "${N[0]}" "01900000-0000-7000-8000-0000000000ff" next
expect 404 "the target memory 01900000-0000-7000-8000-0000000000ff is not in namespace" "link to an unknown memory"
link "$A2" "${N[0]}" next
expect 404 "the source memory" "link from another namespace's memory"
link "${N[0]}" x next
expect 400 "field 'target' must be a memory id" "link to a malformed id"
link "${N[0]}" "${N[1]}" ""
expect 400 "field 'kind' must be 1 to 64 bytes" "an empty kind"
link "${N[0]}" "${N[1]}" "$(printf 'k%.0s' $(seq 65))"
expect 400 "field 'kind' must be 1 to 64 bytes" "a kind of 65 bytes"
req POST /v1/relationships "{\"ns\":\"g\",\"source\":\"${N[0]}\",\"target\":\"${N[1]}\"}"
expect 400 "field 'kind' is required" "link without kind"
req POST /v1/relationships "{\"ns\":\"g\",\"source\":\"${N[0]}\",\"target\":\"${N[1]}\",\"kind\":\"x\",\"weight\":1}"
expect 400 "unknown field 'weight'" "link with an unknown field"
AUTH=$KEY_ONE
link "${N[0]}" "${N[1]}" next
expect_code 403 "link in a namespace the key may not use"
AUTH=$KEY_ALL

req GET "/v1/memories/${N[1]}/relationships?ns=g"
expect 200 "\"source\":\"${N[1]}\",\"target\":\"${N[2]}\",\"kind\":\"next\",\"strength\":0.5,\"created_ms\":" "relationships of n1: outgoing"
expect_body "\"source\":\"${N[0]}\",\"target\":\"${N[1]}\",\"kind\":\"next\",\"strength\":1" "relationships of n1: incoming"
[ "$(count kind)" = 3 ] && pass || fail "n1 has 3 relationships: $BODY"
req GET "/v1/memories/${N[3]}/relationships?ns=g"
[ "$(count kind)" = 1 ] && pass || fail "n3 has 1 relationship: $BODY"
req GET "/v1/memories/01900000-0000-7000-8000-0000000000ff/relationships?ns=g"
expect_code 404 "relationships of an unknown memory"
req GET "/v1/memories/${N[1]}/relationships?ns=a"
expect_code 404 "relationships in another namespace"
req GET "/v1/memories/${N[1]}/relationships"
expect_code 400 "relationships without ns"

# ---------------------------------------------------------- traverse
req GET "/v1/memories/${N[0]}/traverse?ns=g"
expect 200 "\"id\":\"${N[0]}\"" "traverse"
[ "$(count depth)" = 3 ] && pass || fail "traverse: default depth 2 reaches 3 memories: $BODY"
expect_body '"content":"n0"' "traverse starts at the start"
expect_body '"content":"n2"' "traverse reaches depth 2"
expect_no_body '"content":"n3"' "traverse stops at depth 2"
grep -q '"content":"n0".*"depth":0.*"content":"n1".*"depth":1.*"content":"n2".*"depth":2' <<<"$BODY" && pass || fail "traverse is breadth-first with depths: $BODY"
expect_body '"truncated":false' "traverse is complete"
req GET "/v1/memories/${N[0]}/traverse?ns=g&depth=10"
[ "$(count depth)" = 4 ] && pass || fail "traverse depth=10 reaches 4: $BODY"
req GET "/v1/memories/${N[0]}/traverse?ns=g&depth=0"
[ "$(count depth)" = 1 ] && pass || fail "traverse depth=0 is the start only: $BODY"
req GET "/v1/memories/${N[0]}/traverse?ns=g&depth=10&min_strength=0.3"
[ "$(count depth)" = 3 ] && pass || fail "min_strength=0.3 leaves out the 0.2 link: $BODY"
expect_no_body '"content":"n3"' "min_strength filters"
req GET "/v1/memories/${N[0]}/traverse?ns=g&depth=10&limit=2"
[ "$(count depth)" = 2 ] && pass || fail "traverse limit=2: $BODY"
expect_body '"truncated":true' "a traverse cut by its limit says so"
req GET "/v1/memories/${N[0]}/traverse?ns=g&depth=10&limit=4"
expect_body '"truncated":false' "a limit equal to the walk is not truncated"
for q in depth=99 depth=11 depth=-1 depth=two min_strength=2 min_strength=-0.5 min_strength=abc min_strength=nan limit=0 limit=1001 limit=1000000000; do
  req GET "/v1/memories/${N[0]}/traverse?ns=g&$q"
  expect 400 "query parameter '${q%%=*}'" "traverse $q"
done
req GET "/v1/memories/01900000-0000-7000-8000-0000000000ff/traverse?ns=g"
expect 404 '"code":"not_found"' "traverse from an unknown memory"
req GET "/v1/memories/${N[0]}/traverse?ns=a"
expect_code 404 "traverse in another namespace"
req GET "/v1/memories/bad/traverse?ns=g"
expect_code 400 "traverse from a malformed id"

# ---------------------------------------------- DELETE /v1/relationships
req DELETE "/v1/relationships?ns=g&source=${N[2]}&target=${N[3]}&kind=next"
expect 200 '"deleted":true' "unlink"
req DELETE "/v1/relationships?ns=g&source=${N[2]}&target=${N[3]}&kind=next"
expect 404 "no \\\"next\\\" relationship" "unlink twice"
req DELETE "/v1/relationships?ns=g&source=${N[0]}&target=${N[1]}&kind=other"
expect_code 404 "unlink an unknown kind"
req DELETE "/v1/relationships?ns=g&source=${N[0]}&target=${N[1]}"
expect 400 "query parameter 'kind' is required" "unlink without kind"
req DELETE "/v1/relationships?ns=g&source=bad&target=${N[1]}&kind=next"
expect 400 "query parameter 'source' must be a memory id" "unlink with a malformed source"
req DELETE "/v1/relationships?ns=g&source=${N[0]}&target=${N[1]}&kind=%C3%28"
expect 400 "query parameter 'kind' is not valid UTF-8" "unlink with a kind that is not UTF-8"
req DELETE "/v1/relationships?source=${N[0]}&target=${N[1]}&kind=next"
expect 400 "query parameter 'ns' is required" "unlink without ns"
req GET "/v1/memories/${N[3]}/relationships?ns=g"
expect 200 '"relationships":[]' "unlinked"
req DELETE "/v1/memories/${N[1]}?ns=g"
expect_code 200 "delete a linked memory"
req GET "/v1/memories/${N[0]}/relationships?ns=g"
expect 200 '"relationships":[]' "deleting a memory removes its relationships"

# -------------------------------------------------------------- metrics
req GET /metrics
for route in memories.create memories.batch memories.get memories.update memories.delete memories.list memories.history memories.relationships memories.traverse relationships.create relationships.delete; do
  expect_body "route=\"$route\"" "metrics count $route"
done

# ------------------------------------------------------- graceful stop
server_stop

echo "http_memories: $passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
  cd /
  rm -rf "$T"
  exit 0
fi
echo "http_memories: scratch folder kept: $T" >&2
exit 1

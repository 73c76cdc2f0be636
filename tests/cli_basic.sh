#!/usr/bin/env bash
# cli_basic.sh — the engram command end to end: every command, its output
# (human and --json), its exit status (0 ok, 1 failed, 2 usage) and its
# error messages.
#
#   bash tests/cli_basic.sh /path/to/engram
#
# ENGRAM_TEST_TMP: a scratch folder (default: /tmp); the test works in a
# fresh subfolder of it and removes it when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/cli_basic.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/cli_basic.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS
DB=$T/main.db

source "$HERE/common/cli_lib.sh"

# ------------------------------------------------------------ help, usage
run "$BIN" --version
expect_rc 0 "--version"
expect_out "engram 0." "--version"
for h in help --help -h; do
  run "$BIN" $h
  expect_rc 0 "$h"
  expect_out "usage: engram [--db DB] [--ns NAME] [--json] COMMAND" "$h"
done
run "$BIN" help
general_help=$OUT
for cmd in add get update rm history search list link unlink related import export demo help; do
  OUT=$general_help
  expect_out "  $cmd " "help lists $cmd"
  run "$BIN" $cmd --help
  expect_rc 0 "$cmd --help"
  expect_out "usage: engram [global options] $cmd" "$cmd --help"
done
run "$BIN" search --help
expect_out "(default: 10)" "search --help gives the default limit"
run "$BIN" help list
expect_out "(default: 50)" "help list gives the default limit"
run "$BIN" frobnicate
expect_rc 2 "unknown command"
expect_err "unknown command 'frobnicate'" "unknown command message"
run "$BIN"
expect_rc 2 "no command"
expect_err "usage: engram" "no command prints the usage"
run "$BIN" --bogus list
expect_rc 2 "unknown global option"
run e add
expect_rc 2 "add without text"
expect_err "engram: add: give the memory's text" "add without text says what to give"
run e add one two
expect_rc 2 "add with two texts"
run e add x --type nonsense
expect_rc 2 "add --type nonsense"
expect_err "use episodic, semantic, procedural or working" "bad type lists the types"
run e add x --importance 1.5
expect_rc 2 "add --importance 1.5"
run e add x --importance abc
expect_rc 2 "add --importance abc"
run e add x --frob
expect_rc 2 "add --frob"
expect_err "unknown option '--frob'" "unknown option message"
run e add x --metadata
expect_rc 2 "--metadata without a value"
run e search
expect_rc 2 "search without a query"
run e search x --limit 0
expect_rc 2 "search --limit 0"
run e list --limit -3
expect_rc 2 "list --limit -3"
run e get
expect_rc 2 "get without an id"
run e related x --depth many
expect_rc 2 "related --depth many"
run e link only-one
expect_rc 2 "link with one id"
run e import
expect_rc 2 "import without files"
run e export --type a,b
expect_rc 2 "export --type a,b"
run "$BIN" help nonsense
expect_rc 2 "help nonsense"
run "$BIN" --db
expect_rc 2 "--db without a path"
run e --ns "" list
expect_rc 2 "empty --ns"

# ------------------------------------------------- no database yet: exit 1
run e list
expect_rc 1 "list without a database"
expect_err "no database at $DB" "missing database message"
if [ ! -e "$DB" ]; then pass; else fail "a reading command created the database"; fi

# ------------------------------------------------------- add, get, update
run e add "The capital of Portugal is Lisbon" --type semantic --importance 0.9 --metadata '{"source":"atlas"}'
expect_rc 0 "add"
expect_id "add prints the id"
ID1=$OUT
run e get "$ID1"
expect_rc 0 "get"
expect_out "The capital of Portugal is Lisbon" "get shows the content"
expect_out "type:       semantic" "get shows the type"
expect_out "importance: 0.90" "get shows the importance"
expect_out '{"source":"atlas"}' "get shows the metadata"
run e --json get "$ID1"
expect_rc 0 "get --json"
expect_json "get --json"
expect_out "\"id\":\"$ID1\",\"ns\":\"default\",\"type\":\"semantic\",\"content\":\"The capital of Portugal is Lisbon\",\"importance\":0.9,\"metadata\":{\"source\":\"atlas\"},\"created_ms\":" "get --json fields"
run e get "$ID1" --json
expect_json "--json after the command"
run e add --dedup "The capital of Portugal is Lisbon"
expect_rc 0 "add --dedup"
expect_out "$ID1 (existing)" "add --dedup finds the existing memory"
run e --json add --dedup "The capital of Portugal is Lisbon"
expect_out "\"existing\":true" "add --dedup --json"
run bash -c "printf 'read from\nstandard input\n' | \"$BIN\" --db \"$DB\" add -"
expect_rc 0 "add - (stdin)"
ID2=$OUT
run e --json get "$ID2"
expect_out '"content":"read from\nstandard input"' "add - keeps inner newlines, drops the last"
run e add -- "-starts with a dash"
expect_rc 0 "add -- -text"
run e add ""
expect_rc 1 "add of empty text"
run e add "$(printf 'bad\xffutf8')"
expect_rc 1 "add of invalid UTF-8"
run e add x --metadata '[1,2]'
expect_rc 1 "add --metadata that is not an object"
expect_err "must be a JSON object" "metadata message"

run e update "$ID1" --text "The capital of Portugal is Lisbon, on the Tagus" --importance 0.4
expect_rc 0 "update"
expect_out "updated $ID1" "update message"
run e --json get "$ID1"
expect_out '"content":"The capital of Portugal is Lisbon, on the Tagus","importance":0.4' "update changed text and importance"
expect_out '"type":"semantic"' "update kept the type"
run e --json update "$ID1" --type procedural
expect_out '"type":"procedural"' "update --json prints the memory"
run e update "$ID1"
expect_rc 2 "update with nothing to change"
run e update 0190a5e2-7b3c-7def-8123-456789abcdef --importance 0.1
expect_rc 1 "update of a missing memory"
expect_err "no memory 0190a5e2-7b3c-7def-8123-456789abcdef in namespace default" "update not found message"
run e get not-an-id
expect_rc 1 "get of a malformed id"
expect_err "is not a memory id" "malformed id message"
run e get 0190a5e2-7b3c-7def-8123-456789abcdef
expect_rc 1 "get of a missing memory"
expect_err "engram: get: no memory 0190a5e2-7b3c-7def-8123-456789abcdef in namespace default" "get not found message"

# ------------------------------------------------------------ namespaces
run e --ns other add "A memory about Lisbon in another namespace"
OTHER=$OUT
run e get "$OTHER"
expect_rc 1 "get does not cross namespaces"
run env ENGRAM_NS=other ENGRAM_DB="$DB" "$BIN" get "$OTHER"
expect_rc 0 "ENGRAM_NS and ENGRAM_DB"

# ----------------------------------------------------------- rm, history
run e add "short-lived note"
ID3=$OUT
run e update "$ID3" --text "short-lived note, edited"
run e rm "$ID3"
expect_rc 0 "rm"
expect_out "deleted $ID3" "rm message"
run e get "$ID3"
expect_rc 1 "get after rm"
run e --json rm "$ID3"
expect_rc 1 "rm of a deleted memory"
expect_err "no memory $ID3 in namespace default" "rm not found message"
run e history "$ID3"
expect_rc 0 "history of a deleted memory"
expect_lines 3 "history has add, update, delete"
expect_out '(none) -> "short-lived note"' "history add line"
expect_out '"short-lived note" -> "short-lived note, edited"' "history update line"
expect_out '"short-lived note, edited" -> (none)' "history delete line"
if grep -qE '^add +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z' <<<"$OUT"; then pass; else fail "history time is ISO-8601: $OUT"; fi
run e --json history "$ID3"
expect_json "history --json"
expect_out '"event":"delete"' "history --json event"
run e history 0190a5e2-7b3c-7def-8123-456789abcdef
expect_rc 1 "history of a memory that never existed"

# ---------------------------------------------------------------- search
run e add "Octopuses have three hearts and blue blood" --type semantic
OCTO=$OUT
run e add "We watched an octopus open a jar at the aquarium" --type episodic
run e search "octopus hearts"
expect_rc 0 "search"
expect_out "$OCTO" "search finds the memory"
if grep -qE '^ +1  [01]\.[0-9]{3}  semantic    ' <<<"$OUT"; then pass; else fail "search line format: $OUT"; fi
run e search "octopus" --limit 1
expect_lines 1 "search --limit 1"
run e search "octopus" --type episodic
expect_no_out "$OCTO" "search --type episodic leaves out semantic"
expect_out "open a jar" "search --type episodic"
run e --json search "octopus"
expect_json "search --json"
expect_out '"relevance":' "search --json has relevance"
run e search "octopus" --min-relevance 1
expect_rc 0 "search --min-relevance 1"
for q in '"NEAR(a b)*^:-' 'octopus OR' 'AND' '*' '"' "'; DROP TABLE memories; --" 'col:octopus' '^octopus' '{}[]()' '-- -x' 'NEAR(' 'a"b"c' '😀 ☃ café'; do
  run e search -- "$q"
  expect_rc 0 "hostile search [$q]"
done
run e search "$(printf '\xff\xfe')"
expect_rc 1 "search with invalid UTF-8"
expect_err "not valid UTF-8" "invalid UTF-8 message"
run e search "nothing like this anywhere zzzqqq"
expect_rc 0 "search without a match"
expect_out "no memory in namespace default matches" "no match message"
run e --json search "nothing like this anywhere zzzqqq"
if [ -z "$OUT" ]; then pass; else fail "search --json without a match prints nothing: $OUT"; fi

# -------------------------------------------------------- list, paging
for i in 1 2 3 4 5; do
  run e --ns pages add "page memory $i"
done
run e --ns pages list
expect_lines 5 "list"
expect_no_out "next:" "list without more pages"
run e --ns pages list --limit 2
expect_lines 3 "list --limit 2: two and the cursor"
expect_out "next: --after " "list cursor line"
seen=""
after=""
pages=0
while :; do
  if [ -n "$after" ]; then run e --ns pages list --limit 2 --after "$after"; else run e --ns pages list --limit 2; fi
  pages=$((pages + 1))
  seen="$seen$(grep -v '^next:' <<<"$OUT" | awk '{print $3, $4, $5}')"$'\n'
  after=$(grep '^next: --after ' <<<"$OUT" | awk '{print $3}' || true)
  [ -n "$after" ] && [ $pages -lt 10 ] || break
done
got=$(grep -c 'page memory' <<<"$seen")
uniq=$(grep 'page memory' <<<"$seen" | sort -u | grep -c .)
if [ "$got" -eq 5 ] && [ "$uniq" -eq 5 ] && [ $pages -eq 3 ]; then pass; else fail "paging: $got memories ($uniq distinct) in $pages pages"; fi
run e --ns pages --json list --limit 2
expect_json "list --json: only JSON on stdout"
expect_lines 2 "list --json --limit 2"
expect_err "next: --after " "list --json: cursor on stderr"
run e --ns pages list --type semantic
expect_out "no memories in namespace pages" "list --type with no match"

# ------------------------------------------------- link, related, unlink
run e add "node A"
A=$OUT
run e add "node B"
B=$OUT
run e add "node C"
C=$OUT
run e link "$A" "$B"
expect_rc 0 "link"
expect_out "linked $A -> $B (related, 1.00)" "link message"
run e link "$B" "$C" --kind reply-to --strength 0.3
expect_rc 0 "link --kind --strength"
run e link "$A" 0190a5e2-7b3c-7def-8123-456789abcdef
expect_rc 1 "link to a missing memory"
run e link "$A" "$B" --strength 2
expect_rc 2 "link --strength 2"
run e related "$A"
expect_rc 0 "related"
expect_lines 2 "related depth 1: A and B"
expect_out "$B" "related finds B"
run e related "$A" --depth 2
expect_lines 3 "related --depth 2"
expect_out "$C" "related --depth 2 finds C"
run e related "$A" --depth 2 --min-strength 0.5
expect_lines 2 "related --min-strength skips the weak link"
run e related "$C" --depth 2
expect_out "$A" "related follows links backwards"
run e --json related "$A" --depth 2
expect_json "related --json"
expect_out "\"id\":\"$C\"" "related --json C"
expect_out '"depth":2' "related --json depth"
run e get "$B"
expect_out "-> $C  (reply-to, 0.30)" "get lists outgoing links"
expect_out "<- $A  (related, 1.00)" "get lists incoming links"
run e unlink "$B" "$C" --kind reply-to
expect_rc 0 "unlink"
expect_out "unlinked $B -> $C (reply-to)" "unlink message"
run e --json link "$C" "$A" --kind echo --strength 0.5
expect_out "{\"source\":\"$C\",\"target\":\"$A\",\"kind\":\"echo\",\"strength\":0.5}" "link --json"
run e --json unlink "$C" "$A" --kind echo
expect_rc 0 "unlink --json"
expect_json "unlink --json"
run e related "$A" --depth 2
expect_lines 2 "related after unlink"
run e unlink "$B" "$C" --kind reply-to
expect_rc 1 "unlink of a missing relationship"
run e related 0190a5e2-7b3c-7def-8123-456789abcdef
expect_rc 1 "related of a missing memory"

# --------------------------------------------------------- import JSON Lines
cat >"$T/in.jsonl" <<'EOF'
{"content": "imported fact one", "type": "semantic", "importance": 0.8, "metadata": {"k": "v"}}
{"content": "imported episode two"}
{"content": "broken line", "importance": 
{"content": "imported into its own namespace", "ns": "side"}

{"content": "imported with a given id", "id": "0190a5e2-7b3c-7def-8123-456789abcdef"}
EOF
run e --ns imp import "$T/in.jsonl"
expect_rc 1 "import with a bad line exits 1"
expect_err "$T/in.jsonl:3: not valid JSON" "import names FILE:LINE"
expect_out "imported 4 memories (1 skipped)" "import summary"
run e --ns imp list
expect_lines 3 "import: three memories in --ns"
expect_out "imported fact one" "import: first line"
run e --ns side list
expect_out "imported into its own namespace" "import: \"ns\" overrides --ns"
run e --ns imp --json get 0190a5e2-7b3c-7def-8123-456789abcdef
expect_out '"content":"imported with a given id"' "import keeps a given id"
run e --ns imp import "$T/in.jsonl"
expect_rc 1 "import again: the id exists"
expect_err "$T/in.jsonl:6: " "import again names the line of the existing id"
expect_out "imported 3 memories (2 skipped)" "import again: the others go in"
printf '{"content":"from a pipe"}\n{"nope":1}\n[1]\n{"content":"x","type":"bad"}\n{"content":"y","metadata":[1]}\n{"content":"z","id":"nope"}\n{"content":"w","importance":7}\n' >"$T/bad.jsonl"
run bash -c "\"$BIN\" --db \"$DB\" --ns pipe import - < \"$T/bad.jsonl\""
expect_rc 1 "import - with bad lines"
expect_out "imported 1 memory (6 skipped)" "import - summary"
for l in 2 3 4 5 6 7; do expect_err "<stdin>:$l: " "import reports line $l"; done
run e import "$T/does-not-exist.jsonl"
expect_rc 1 "import of a missing file"

# ----------------------------------------------- export round trip
run e export --all
expect_rc 0 "export --all"
expect_json "export is JSON Lines"
expect_out '"content_hash":"' "export has content_hash"
printf '%s\n' "$OUT" >"$T/export1.jsonl"
n1=$(grep -c . "$T/export1.jsonl")
run "$BIN" --db "$T/copy.db" import "$T/export1.jsonl"
expect_rc 0 "import of an export"
expect_out "imported $n1 memories (0 skipped)" "import of an export: all of it"
run "$BIN" --db "$T/copy.db" export --all
printf '%s\n' "$OUT" >"$T/export2.jsonl"
strip() { sed -E 's/,"(created_ms|updated_ms|accessed_ms)":[0-9]+//g' "$1" | sort; }
if diff <(strip "$T/export1.jsonl") <(strip "$T/export2.jsonl") >/dev/null; then
  pass
else
  fail "export | import | export differs: $(diff <(strip "$T/export1.jsonl") <(strip "$T/export2.jsonl") | head -5)"
fi
run e --ns imp export --type semantic
expect_lines 2 "export --type semantic of one namespace (imported twice)"
expect_out '"ns":"imp"' "export of --ns"

# ------------------------------------------------------------ LoCoMo
cat >"$T/conv-77.json" <<'EOF'
{
  "speaker_a": "Alice",
  "speaker_b": "Bob",
  "session_1_date_time": "1:56 pm on 8 May, 2023",
  "session_1": [
    {"speaker": "Alice", "dia_id": "D1:1", "text": "I adopted a puppy called Pixel."},
    {"speaker": "Bob", "dia_id": "D1:2", "text": "Look at this!", "blip_caption": "a photo of a sailboat", "img_url": ["x"]}
  ],
  "session_2_date_time": "9:00 am on 1 June, 2023",
  "session_2": [
    {"speaker": "Bob", "dia_id": "D2:1", "text": "How is Pixel doing?"},
    {"speaker": "Alice", "dia_id": "D2:2"}
  ],
  "qa": [{"question": "What is the puppy called?", "answer": "Pixel", "evidence": ["D1:1"], "category": 4}]
}
EOF
run e import "$T/conv-77.json"
expect_rc 1 "LoCoMo import with a turn without text"
expect_err "conv-77.json:session_2:D2:2: " "LoCoMo bad turn location"
expect_out "imported 3 memories (1 skipped)" "LoCoMo summary"
run e --ns conv-77 --json list
expect_lines 3 "LoCoMo: namespace from the file name"
expect_out '"content":"Alice: I adopted a puppy called Pixel."' "LoCoMo content"
expect_out '"content":"Bob: Look at this! [shares an image: a photo of a sailboat]"' "LoCoMo image caption"
expect_out '"metadata":{"speaker":"Alice","dia_id":"D1:1","session":1,"session_time":"1:56 pm on 8 May, 2023"}' "LoCoMo metadata"
expect_out '"dia_id":"D2:1","session":2' "LoCoMo second session"
expect_out '"type":"episodic"' "LoCoMo turns are episodic"
# The benchmark's own layout: an array of samples with sample_id and the
# sessions under "conversation".
cat >"$T/locomo10.json" <<'EOF'
[{"sample_id": "conv-x1", "conversation": {"speaker_a": "Cy", "speaker_b": "Di",
  "session_1_date_time": "noon", "session_1": [{"speaker": "Cy", "dia_id": "D1:1", "text": "hello Di"}]},
  "qa": []},
 {"sample_id": "conv-x2", "conversation": {"speaker_a": "Ed", "speaker_b": "Flo",
  "session_1": [{"speaker": "Flo", "dia_id": "D1:1", "text": "hi Ed"}]}}]
EOF
run e import "$T/locomo10.json"
expect_rc 0 "LoCoMo array import"
run e --ns conv-x1 list
expect_out "Cy: hello Di" "LoCoMo namespace from sample_id"
run e --ns conv-x2 --json list
expect_out '"metadata":{"speaker":"Flo","dia_id":"D1:1","session":1}' "LoCoMo without a session time"
run e --ns chosen import "$T/locomo10.json"
run e --ns chosen list
expect_lines 2 "LoCoMo import into --ns"
run e --ns conv-77 search "puppy"
expect_out "Alice: I adopted a puppy" "search over LoCoMo turns"

# ----------------------------------------------------------------- demo
run "$BIN" --db "$T/demo/sub/demo.db" demo
expect_rc 0 "demo"
expect_out "stored 6 memories in $T/demo/sub/demo.db (namespace demo)" "demo stores"
expect_out "linked" "demo links"
expect_out 'search "' "demo searches"
expect_out "next, try:" "demo hints"
run "$BIN" --db "$T/demo/sub/demo.db" demo
expect_rc 0 "demo again"
expect_out "nothing new stored" "demo again stores nothing"
run "$BIN" --db "$T/demo/sub/demo.db" --ns demo list
expect_lines 6 "demo has six memories after two runs"

# --------------------------------------------------------------- summary
echo "cli_basic: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "cli_basic: scratch files kept in $T" >&2
  exit 1
fi
rm -rf "$T"

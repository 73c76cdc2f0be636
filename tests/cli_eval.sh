#!/usr/bin/env bash
# cli_eval.sh — engram eval locomo on a tiny hand-made conversation whose
# recall and MRR are worked out by hand (below), human and --json output,
# the temporary database, --db, and the errors.
#
#   bash tests/cli_eval.sh /path/to/engram
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BIN=${1:?usage: bash tests/cli_eval.sh /path/to/engram}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
mkdir -p "${ENGRAM_TEST_TMP:-/tmp}"
T=$(mktemp -d "${ENGRAM_TEST_TMP:-/tmp}/cli_eval.XXXXXX")
cd "$T"
unset ENGRAM_DB ENGRAM_NS
DB=$T/eval.db
source "$HERE/common/cli_lib.sh"
mkdir -p "$T/tmp"
export TMPDIR=$T/tmp

# Two sessions, eight turns. The questions hold only words chosen to match
# (or not) particular turns:
#   cat 1 "orchestra instrument": no turn has either word -> no results:
#         R@k 0, MRR 0. Evidence "D1:4; D:2:2" (two ids in one entry, one
#         with a stray ':') reads as D1:4 and D2:2.
#   cat 2 "glacier hiking": only D2:1 matches (rank 1); the other evidence
#         turn D2:3 shares no word -> R@k 0.5, MRR 1.
#   cat 3 "violin teacher": D2:2 has both words (rank 1), the evidence D1:4
#         only "violin" (rank 2) -> R@1 0, R@k>=2 1, MRR 0.5.
#   cat 4 "golden retriever puppy": only D1:1 -> R@k 1, MRR 1; its evidence
#         also lists "D", which is not an id: reported, ignored.
#   cat 4 with no evidence, and cat 5: left out, counted.
# Overall (4 questions): R@1 = (0+0.5+0+1)/4 = 0.375; R@2, R@5, R@10,
# R@20 = (0+0.5+1+1)/4 = 0.625; MRR = (0+1+0.5+1)/4 = 0.625.
cat >conv-t.json <<'JSON'
{
  "speaker_a": "Alice",
  "speaker_b": "Bob",
  "conversation": {
    "speaker_a": "Alice",
    "speaker_b": "Bob",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
      {"speaker": "Alice", "dia_id": "D1:1", "text": "I adopted a golden retriever puppy called Biscuit."},
      {"speaker": "Bob", "dia_id": "D1:2", "text": "Congratulations, that sounds wonderful."},
      {"speaker": "Alice", "dia_id": "D1:3", "text": "My sister moved to Lisbon."},
      {"speaker": "Bob", "dia_id": "D1:4", "text": "I started learning violin last month."}
    ],
    "session_2_date_time": "10:00 am on 20 May, 2023",
    "session_2": [
      {"speaker": "Alice", "dia_id": "D2:1", "text": "We went hiking near a glacier yesterday."},
      {"speaker": "Bob", "dia_id": "D2:2", "text": "My violin teacher moved to Vienna."},
      {"speaker": "Alice", "dia_id": "D2:3", "text": "It was freezing."},
      {"speaker": "Bob", "dia_id": "D2:4", "text": "See you soon.", "blip_caption": "a photo of a red kayak"}
    ]
  },
  "qa": [
    {"question": "orchestra instrument", "answer": "violin", "evidence": ["D1:4; D:2:2"], "category": 1},
    {"question": "glacier hiking", "answer": "20 May 2023", "evidence": ["D2:1", "D2:3"], "category": 2},
    {"question": "violin teacher", "answer": "last month", "evidence": ["D1:4"], "category": 3},
    {"question": "golden retriever puppy", "answer": "Biscuit", "evidence": ["D1:1", "D"], "category": 4},
    {"question": "kayak", "answer": "red", "evidence": [], "category": 4},
    {"question": "What is Bob's favourite food?", "adversarial_answer": "pizza", "evidence": ["D1:2"], "category": 5}
  ]
}
JSON

# ------------------------------------------------------------- --json
run "$BIN" --json eval locomo conv-t.json
expect_rc 0 "eval --json"
expect_json "eval --json"
expect_lines 1 "eval --json prints one object"
expect_out '"conversations":1,"turns":8,"turns_skipped":0,"questions":4,"skipped_category_5":1,"skipped_no_evidence":1,"unparseable_evidence":1,"evidence_not_in_turns":0,"search_errors":0,"k":[5,10,20]' "eval --json counts"
expect_out '"strategy":"lexical"' "eval --json strategy"
expect_out '"multi-hop":{"questions":1,"recall":{"5":0.0,"10":0.0,"20":0.0},"mrr":0.0,"category":1}' "multi-hop: no result"
expect_out '"temporal":{"questions":1,"recall":{"5":0.5,"10":0.5,"20":0.5},"mrr":1.0,"category":2}' "temporal: half the evidence"
expect_out '"open-domain":{"questions":1,"recall":{"5":1.0,"10":1.0,"20":1.0},"mrr":0.5,"category":3}' "open-domain: evidence at rank 2"
expect_out '"single-hop":{"questions":1,"recall":{"5":1.0,"10":1.0,"20":1.0},"mrr":1.0,"category":4}' "single-hop: evidence at rank 1"
expect_out '"overall":{"questions":4,"recall":{"5":0.625,"10":0.625,"20":0.625},"mrr":0.625}' "overall"
expect_out '"searches":4' "latency over the 4 searches"
expect_err 'evidence "D" is not a dialogue id' "an unreadable evidence entry is reported"
if [ -z "$(ls -A "$T/tmp")" ]; then pass; else fail "the temporary database is removed: $(ls -A "$T/tmp")"; fi

run "$BIN" --json eval locomo conv-t.json --k 2,1 --parallel 1
expect_rc 0 "eval --k 2,1 --parallel 1"
expect_out '"k":[1,2]' "--k is sorted"
expect_out '"overall":{"questions":4,"recall":{"1":0.375,"2":0.625},"mrr":0.625}' "overall at k 1 and 2"
expect_out '"open-domain":{"questions":1,"recall":{"1":0.0,"2":1.0},"mrr":0.5,"category":3}' "rank 2 is in R@2, not R@1"

# ------------------------------------------------------------- human
run "$BIN" eval locomo conv-t.json
expect_rc 0 "eval"
expect_out "strategy lexical" "the strategy is named"
expect_out "R@5" "the table has R@5"
expect_out "overall" "the table has the overall row"
expect_out "latency: p50" "latency is printed"
grep -E '^overall +4 +0\.625 +0\.625 +0\.625 +0\.625$' <<<"$OUT" >/dev/null && pass || fail "overall row: $OUT"
grep -E '^open-domain +1 +1\.000 +1\.000 +1\.000 +0\.500$' <<<"$OUT" >/dev/null && pass || fail "open-domain row: $OUT"

# ------------------------------------------------------- strategies
run "$BIN" --json eval locomo conv-t.json --strategy lexical,vector,hybrid
expect_rc 0 "eval of three strategies"
expect_out '"strategy":"lexical"' "lexical measured"
expect_out '"strategy":"vector"' "vector measured"
expect_out '"strategy":"hybrid"' "hybrid measured"
expect_out '"search_errors":0' "no vector search failed"
run "$BIN" eval locomo conv-t.json --strategy vector
expect_rc 0 "eval --strategy vector"
expect_out "strategy vector" "the vector table is named"
run "$BIN" eval locomo conv-t.json --strategy lexical,vector,hybrid,lexical
expect_rc 2 "eval of four strategies"
run "$BIN" eval locomo conv-t.json --strategy vectors
expect_rc 2 "eval of an unknown strategy"
expect_err "lexical, hybrid or vector" "the strategies are named"

# ------------------------------------------------------------- --db
run e --json eval locomo conv-t.json
expect_rc 0 "eval --db"
expect_out '"overall":{"questions":4,"recall":{"5":0.625,"10":0.625,"20":0.625},"mrr":0.625}' "eval --db gives the same figures"
run e --ns eval-1-conv-t list
expect_lines 8 "with --db the turns are kept"
run e eval locomo conv-t.json
expect_rc 1 "eval into a database that already holds the namespace"
expect_err "already holds memories" "eval says why"

# ------------------------------------------------------------- errors
run "$BIN" eval locomo missing.json
expect_rc 1 "eval on a missing file"
expect_err "cannot open missing.json" "a missing file is named"
echo '{"content": "not a conversation"}' >notconv.json
run "$BIN" eval locomo notconv.json
expect_rc 1 "eval on a file that is not LoCoMo"
expect_err "not a LoCoMo conversation" "eval says what it wants"
run "$BIN" eval locomo
expect_rc 2 "eval without files"
run "$BIN" eval squad conv-t.json
expect_rc 2 "eval of an unknown benchmark"
expect_err "unknown benchmark 'squad'" "the benchmark is named"
run "$BIN" eval locomo conv-t.json --k 0,5
expect_rc 2 "eval --k 0"
run "$BIN" eval locomo conv-t.json --k five
expect_rc 2 "eval --k five"

echo "cli_eval: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "cli_eval: scratch files kept in $T" >&2
  exit 1
fi
rm -rf "$T"

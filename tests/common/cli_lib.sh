# cli_lib.sh — helpers shared by the tests/cli_*.sh scripts (sourced, not
# run). The sourcing script sets BIN (the engram binary), T (its scratch
# folder) and DB (its database) first.

passed=0
failed=0
OUT=
ERR=
RC=0

# run CMD...: OUT, ERR and RC of the command (never stops the script).
run() {
  set +e
  OUT=$("$@" 2>"$T/stderr")
  RC=$?
  set -e
  ERR=$(cat "$T/stderr")
}
# e ARGS...: engram on the test database.
e() { "$BIN" --db "$DB" "$@"; }

pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$*" >&2
}
# expect_rc STATUS WHAT
expect_rc() {
  if [ "$RC" -eq "$1" ]; then pass; else fail "$2: exit $RC, expected $1; stderr: $ERR"; fi
}
# expect_out TEXT WHAT: stdout holds TEXT
expect_out() {
  if grep -qF -- "$1" <<<"$OUT"; then pass; else fail "$2: stdout lacks [$1]; stdout: $OUT"; fi
}
expect_no_out() {
  if grep -qF -- "$1" <<<"$OUT"; then fail "$2: stdout has [$1]; stdout: $OUT"; else pass; fi
}
expect_err() {
  if grep -qF -- "$1" <<<"$ERR"; then pass; else fail "$2: stderr lacks [$1]; stderr: $ERR"; fi
}
# expect_lines N WHAT: stdout has N non-empty lines
expect_lines() {
  local n
  n=$(grep -c . <<<"$OUT" || true)
  if [ "$n" -eq "$1" ]; then pass; else fail "$2: $n lines, expected $1; stdout: $OUT"; fi
}
# expect_id WHAT: stdout's first word is a memory id
expect_id() {
  if grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}' <<<"$OUT"; then
    pass
  else
    fail "$1: no memory id in [$OUT]"
  fi
}
# expect_json WHAT: every stdout line is one JSON object
expect_json() {
  if [ -n "$OUT" ] && ! grep -qv '^{.*}$' <<<"$OUT"; then pass; else fail "$1: not JSON Lines: $OUT"; fi
}


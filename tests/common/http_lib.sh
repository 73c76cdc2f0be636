# http_lib.sh — helpers shared by the tests/http_*.sh scripts (sourced, not
# run, after tests/common/cli_lib.sh, whose pass, fail, expect_rc and
# expect_err it uses). The sourcing script sets BIN (the engram binary) and
# T (its scratch folder) first. Needs curl.

SERVER_PID=
SERVER_LOG=
PORT=
BASE=

# server_kill: the EXIT trap — a server still running is killed outright.
server_kill() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

# server_start DB [SERVE ARGS...]: starts `engram --db DB serve` on a free
# port of 127.0.0.1 with its stderr in SERVER_LOG ($NEXT_SERVER_LOG when set,
# so that a script can run two servers; else $T/server.log); sets
# SERVER_PID, PORT and BASE, and waits until GET /healthz answers 200 (with
# the key in AUTH, if any). Exits the script when the server does not start.
server_start() {
  local db=$1
  shift
  SERVER_LOG=${NEXT_SERVER_LOG:-$T/server.log}
  trap server_kill EXIT
  "$BIN" --db "$db" serve --listen 127.0.0.1:0 "$@" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  PORT=
  for _ in $(seq 100); do
    PORT=$(grep -o '(port [0-9]*)' "$SERVER_LOG" 2>/dev/null | grep -o '[0-9]*' || true)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$PORT" ]; then
    echo "$(basename "$0" .sh): the server did not start:" >&2
    cat "$SERVER_LOG" >&2
    exit 1
  fi
  BASE=http://127.0.0.1:$PORT
  local code
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' \
      -H "Authorization: Bearer ${AUTH:-}" "$BASE/healthz" </dev/null) || code=000
    [ "$code" = 200 ] && break
    sleep 0.1
  done
}

# server_stop: SIGTERM; the server must exit 0 within 10 s, say it stopped,
# and its log must hold no sanitizer report. Counts as checks.
server_stop() {
  local stopped=0
  kill -TERM "$SERVER_PID"
  for _ in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then stopped=1; break; fi
    sleep 0.1
  done
  if [ $stopped -eq 1 ]; then
    set +e
    wait "$SERVER_PID"
    RC=$?
    set -e
    SERVER_PID=
    ERR=$(cat "$SERVER_LOG")
    expect_rc 0 "SIGTERM stops the server cleanly"
    expect_err "stopped; closing the store" "the server says it stopped"
  else
    fail "the server did not stop within 10 s of SIGTERM"
  fi
  if grep -qE 'Sanitizer|runtime error' "$SERVER_LOG"; then
    fail "the sanitizers reported: $(grep -E -A20 'Sanitizer|runtime error' "$SERVER_LOG" | head -40)"
  else
    pass
  fi
}

# The response of the script's own request helpers: CODE and BODY.
CODE=
BODY=
expect_code() {
  if [ "$CODE" = "$1" ]; then pass; else fail "$2: status $CODE, expected $1; body: $BODY"; fi
}
expect_body() {
  if grep -qF -- "$1" <<<"$BODY"; then pass; else fail "$2: body lacks [$1]; body: $BODY"; fi
}
expect_no_body() {
  if grep -qF -- "$1" <<<"$BODY"; then fail "$2: body has [$1]; body: $BODY"; else pass; fi
}
# expect CODE TEXT WHAT: the status, and TEXT in the body.
expect() {
  expect_code "$1" "$3"
  expect_body "$2" "$3"
}
# field NAME: the first string value of "NAME" in BODY.
field() { grep -o "\"$1\":\"[^\"]*\"" <<<"$BODY" | head -1 | cut -d'"' -f4; }
# count NAME: how many times "NAME": occurs in BODY.
count() { grep -o "\"$1\":" <<<"$BODY" | wc -l | tr -d ' '; }

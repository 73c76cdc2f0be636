#!/usr/bin/env bash
# pgtest.sh — a throwaway PostgreSQL server for tests and benchmarks.
#
#   scripts/pgtest.sh start DIR    initdb (once) and start a server whose data,
#                                  socket and log live in DIR; prints and
#                                  writes DIR/conninfo (libpq key=value)
#   scripts/pgtest.sh stop DIR     fast shutdown (no error when not running)
#   scripts/pgtest.sh restart DIR  immediate stop (no checkpoint, like a crash
#                                  or a failover) then start on the same port
#   scripts/pgtest.sh kill DIR     immediate stop only
#
# The server listens on 127.0.0.1 only, on a free port chosen at the first
# start, and on a Unix socket in DIR (in a short directory under /tmp when
# DIR's path is too long for a socket's); authentication is `trust` (it is
# reachable from this machine only and holds test data). Debian's server
# refuses to run as root, so when run as root the cluster belongs to the
# `postgres` user and DIR is made readable to it.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop|restart|kill DIR" >&2
  exit 2
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z $bindir || ! -x $bindir/pg_ctl ]]; then
  echo "pgtest: PostgreSQL server binaries not found under /usr/lib/postgresql;" \
    "scripts/deps.sh installs the postgresql package" >&2
  exit 3
fi

as_owner() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  # A port nobody listens on now, from the ephemeral range's far end.
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "pgtest: no free port found" >&2
  exit 1
}

data=$dir/data
start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  data=$dir/data
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$dir"
    # The server must reach DIR through its parents.
    local d=$dir
    while [[ $d != / ]]; do
      d=$(dirname "$d")
      chmod o+x "$d" 2>/dev/null || true
    done
  fi
  # The server's user may not be able to enter the caller's directory.
  cd "$dir"
  if [[ ! -f $data/PG_VERSION ]]; then
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
  fi
  local port tries=0
  if [[ -f $dir/port ]]; then
    port=$(cat "$dir/port")
  else
    port=$(free_port)
    echo "$port" >"$dir/port"
  fi
  # A Unix socket's path has at most 107 bytes: a deep DIR gets its socket
  # in a short directory of its own under /tmp (kept for restarts).
  local sock=$dir
  if ((${#dir} > 80)); then
    if [[ -f $dir/sockdir && -d $(cat "$dir/sockdir") ]]; then
      sock=$(cat "$dir/sockdir")
    else
      sock=$(mktemp -d /tmp/pgtest.XXXXXX)
      [[ $(id -u) == 0 ]] && chown postgres: "$sock"
      echo "$sock" >"$dir/sockdir"
    fi
  fi
  local logsize
  logsize=$(stat -c %s "$dir/server.log" 2>/dev/null || echo 0)
  until as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c fsync=off \
-c synchronous_commit=on -c max_connections=300 -c shared_buffers=128MB" \
    start >/dev/null; do
    # Another server may have taken the port since it was chosen (two
    # builds starting test servers at once): choose again, a few times.
    tries=$((tries + 1))
    if ((tries < 4)) && tail -c +$((logsize + 1)) "$dir/server.log" |
      grep -q "could not bind\|could not create any TCP"; then
      logsize=$(stat -c %s "$dir/server.log")
      port=$(free_port)
      echo "$port" >"$dir/port"
      continue
    fi
    tail -n 30 "$dir/server.log" >&2
    exit 1
  done
  local have
  have=$(as_owner "$bindir/psql" -h "$sock" -p "$port" -U postgres -d postgres \
    -tAc "SELECT 1 FROM pg_database WHERE datname = 'engram'")
  if [[ $have != 1 ]]; then
    as_owner "$bindir/createdb" -h "$sock" -p "$port" -U postgres engram
  fi
  local conninfo="host=127.0.0.1 port=$port dbname=engram user=postgres"
  echo "$conninfo" >"$dir/conninfo"
  echo "$conninfo"
}

stop() {
  local mode=$1
  if [[ -f $data/postmaster.pid ]]; then
    as_owner "$bindir/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop \
      >/dev/null 2>&1 || true
  fi
  if [[ -f $dir/sockdir ]]; then
    rm -rf "$(cat "$dir/sockdir")"
    rm -f "$dir/sockdir"
  fi
}

case $cmd in
start) start ;;
stop) stop fast ;;
kill) stop immediate ;;
restart)
  stop immediate
  start >/dev/null
  ;;
*)
  echo "pgtest: unknown command $cmd (start|stop|restart|kill)" >&2
  exit 2
  ;;
esac

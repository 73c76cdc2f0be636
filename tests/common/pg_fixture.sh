#!/usr/bin/env bash
# pg_fixture.sh — ctest's PostgreSQL fixture: the tests pg_server_start and
# pg_server_stop (CMakeLists.txt) run it around every <name>_pg test.
#
#   pg_fixture.sh start DIR   a fresh throwaway cluster in DIR (a leftover
#                             server of an earlier run is stopped and its
#                             directory removed first), through
#                             scripts/pgtest.sh; DIR/conninfo names it
#   pg_fixture.sh stop DIR    stops it (also after failed tests: ctest runs
#                             a fixture's cleanup whatever its tests did)
#
# The _pg tests read the server from DIR/conninfo (ENGRAM_TEST_PG points
# there). What a person set in ENGRAM_TEST_PG decides what it holds:
#   unset or empty  a server started here; failing to start it fails the
#                   fixture, and ctest then runs none of the _pg tests
#                   and counts them failed: never a silent skip
#   off             "off": no server; this prints why and exits 77
#                   (skipped), and every _pg test skips with the reason
#   anything else   a server of their own (conninfo, or a file holding
#                   one), used as it is and left running
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
pgtest="$(cd "$(dirname "$0")/../.." && pwd)/scripts/pgtest.sh"
wanted=${ENGRAM_TEST_PG:-}

case $cmd in
start)
  bash "$pgtest" stop "$dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  if [[ $wanted == off ]]; then
    echo off >"$dir/conninfo"
    echo "PostgreSQL tests skipped: ENGRAM_TEST_PG=off"
    exit 77
  fi
  if [[ -n $wanted ]]; then
    if [[ -f $wanted ]]; then
      cp "$wanted" "$dir/conninfo"
    else
      echo "$wanted" >"$dir/conninfo"
    fi
    echo "PostgreSQL tests use the server of ENGRAM_TEST_PG: $(cat "$dir/conninfo")"
    exit 0
  fi
  bash "$pgtest" start "$dir"
  ;;
stop)
  bash "$pgtest" stop "$dir"
  ;;
*)
  echo "pg_fixture: unknown command $cmd (start|stop)" >&2
  exit 2
  ;;
esac

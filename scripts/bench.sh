#!/usr/bin/env bash
# Runs every benchmark of an optimized build and collects the output.
#   bash scripts/bench.sh BUILD_DIR     (what `make bench` runs)
# Each BUILD_DIR/bench_* binary runs from the repository root with its
# defaults plus the arguments below; everything printed goes to the
# terminal and to BUILD_DIR/bench-results.txt. ENGRAM_BENCH_TMP names
# BUILD_DIR/bench-tmp, where the benchmarks put their database files (and
# remove them; bench_search keeps its large files there for the next run).
# ENGRAM_BENCH_1M=1 adds bench_search's 1,000,000-memory size (~15 min).
# A benchmark that fails (wrong answers, a crash) makes the
# script exit non-zero after the others have run; a missed performance
# target is a result, printed in its RATIOS section, not a failure.
set -uo pipefail

build="${1:-build}"
if [ ! -d "$build" ]; then
  echo "bench.sh: no build directory $build (run: make bench)" >&2
  exit 2
fi
out="$build/bench-results.txt"
tmp="$build/bench-tmp"
mkdir -p "$tmp"
export ENGRAM_BENCH_TMP="$tmp"

# Benchmark-only Debian packages, not dependencies of make test, installed
# here when missing and allowed: wrk (bench_http drives engram serve with
# it) and libfaiss-dev (FAISS, bench_vector's reference, linked by that
# benchmark only). Without them bench_http measures its in-process side
# only and bench_vector leaves out its FAISS column, each saying so.
apt_get=
if [ "$(id -u)" -eq 0 ]; then
  apt_get="apt-get"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt_get="sudo -n env DEBIAN_FRONTEND=noninteractive apt-get"
fi
# install_pkg PACKAGE WHAT-HAPPENS-WITHOUT-IT
install_pkg() {
  if [ -z "$apt_get" ]; then
    echo "bench.sh: $1 is missing and cannot be installed without root: $2" >&2
    return 1
  fi
  echo "bench.sh: installing $1" >&2
  # shellcheck disable=SC2086 # "sudo -n env ... apt-get" is meant to split
  DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq \
    --no-install-recommends "$1" >/dev/null 2>&1 && return 0
  echo "bench.sh: could not install $1: $2" >&2
  return 1
}
command -v wrk >/dev/null 2>&1 ||
  install_pkg wrk "bench_http skips its HTTP side"
if [ ! -f /usr/include/faiss/IndexFlat.h ] &&
  install_pkg libfaiss-dev "bench_vector runs without its FAISS column"; then
  # The build was configured without FAISS: configure it again, so that
  # CMake finds FAISS, and rebuild bench_vector with it.
  if ! { cmake -S "$(dirname "$0")/.." -B "$build" >/dev/null &&
    cmake --build "$build" --target bench_vector -j "$(nproc)" >/dev/null; }; then
    echo "bench.sh: could not rebuild bench_vector with FAISS" >&2
  fi
fi

# Arguments per benchmark, beyond its own defaults.
args_for() {
  case "$1" in
    bench_store) echo "--runs 3" ;;
    # ~4 min: the blocking pattern needs 64 s at 1,024 and is capped at
    # 120 s at 10,000; --reps 3 gives the medians of docs/benchmarks.md.
    bench_starvation) echo "--reps 1" ;;
    bench_context) echo "--runs 3" ;;
    # 100,000 memories: about 10 s to write the file once (kept in
    # bench-tmp and reused by later runs), 1-2 min of questions. The
    # 1,000,000 file takes ~3 min to write and its questions ~10 min (the
    # naive query and lexical search rank every match): ENGRAM_BENCH_1M=1
    # adds it.
    bench_search)
      if [ "${ENGRAM_BENCH_1M:-0}" = 1 ]; then
        echo "--sizes 100000,1000000 --runs 3"
      else
        echo "--sizes 100000 --runs 3"
      fi
      ;;
    *) ;;
  esac
}

shopt -s nullglob
benches=("$build"/bench_*)
if [ ${#benches[@]} -eq 0 ]; then
  echo "bench.sh: no bench_* binaries in $build" >&2
  exit 2
fi

{
  echo "# engram benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$out"

failed=0
for bin in "${benches[@]}"; do
  [ -x "$bin" ] || continue
  name="$(basename "$bin")"
  # shellcheck disable=SC2046 # the arguments are meant to split
  set -- $(args_for "$name")
  echo | tee -a "$out"
  echo "### $name $*" | tee -a "$out"
  if ! "$bin" "$@" 2>&1 | tee -a "$out"; then
    echo "### $name FAILED" | tee -a "$out"
    failed=1
  fi
done
# The PostgreSQL backend, on a throwaway server of Debian's postgresql
# (scripts/pgtest.sh: loopback only, stopped at the end): bench_store
# against raw libpq, bench_starvation, where I/O latency is real, and
# bench_search at 100,000 against a plain ts_rank query (the server is
# new each time, so the 100,000 memories are written each time).
pgdir="$tmp/pg"
if conninfo=$(bash "$(dirname "$0")/pgtest.sh" start "$pgdir"); then
  for name in bench_store bench_starvation bench_search; do
    [ -x "$build/$name" ] || continue
    if [ "$name" = bench_search ]; then
      set -- --sizes 100000 --runs 3 --db "$conninfo"
    else
      # shellcheck disable=SC2046 # the arguments are meant to split
      set -- $(args_for "$name") --db "$conninfo"
    fi
    echo | tee -a "$out"
    echo "### $name $* (PostgreSQL)" | tee -a "$out"
    if ! "$build/$name" "$@" 2>&1 | tee -a "$out"; then
      echo "### $name on PostgreSQL FAILED" | tee -a "$out"
      failed=1
    fi
  done
  bash "$(dirname "$0")/pgtest.sh" stop "$pgdir"
else
  echo "### PostgreSQL benchmarks skipped: no server could be started" |
    tee -a "$out"
  failed=1
fi

echo | tee -a "$out"
echo "results: $out"
exit $failed

#!/usr/bin/env bash
# Installs the Debian packages engram needs, only those missing; fast when
# everything is there. Runs apt-get as root (or through sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libuv1-dev libsqlite3-dev libjansson-dev libxxhash-dev libcmocka-dev
  libh2o-dev libcurl4-openssl-dev libpq-dev postgresql curl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Tools wanted as commands, from Debian's packages when they are missing:
# node and npm run mem0's own client in tests/http_mem0.sh (a node from
# elsewhere, with its own npm, does as well).
for pair in node:nodejs npm:npm; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "deps: missing packages ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

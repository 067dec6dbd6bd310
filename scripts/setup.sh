#!/usr/bin/env bash
# Installs what the project needs on a Debian 12 / Ubuntu machine: the apt
# packages listed in scripts/apt/*.txt and a Python virtual environment in
# .venv with the toolkit. Idempotent: a second run does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

mapfile -t wanted < <(cat scripts/apt/*.txt | sed 's/#.*//' | awk 'NF {print $1}' | sort -u)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} apt packages"
  for a in arm64 armhf; do
    dpkg --print-foreign-architectures | grep -qx "$a" || $SUDO dpkg --add-architecture "$a"
  done
  # A mirror in the middle of a sync fails one index now and then: retry,
  # and go on with what was fetched.
  for i in 1 2 3 4; do
    if $SUDO apt-get update -q -o Acquire::Retries=3; then break; fi
    echo "setup: apt-get update failed (try $i), retrying" >&2; sleep $((i * 5))
  done
  for i in 1 2 3; do
    if $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then break; fi
    [ "$i" = 3 ] && { echo "setup: apt-get install failed" >&2; exit 1; }
    sleep 10; $SUDO apt-get update -q -o Acquire::Retries=3 || true
  done
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi
echo "setup: done"

#!/usr/bin/env bash
# The main job: sets the machine up, then runs the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/defender-iot demo "$@"

#!/usr/bin/env bash
# Set up the environment (first run only) and run the main job on its embedded default:
# S4D on generated ListOps (no download), a few minutes on a laptop-class CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$PY" -m experiments.train --config=configs/quickstart.py --workdir="${WORKDIR:-runs/quickstart}" "$@"

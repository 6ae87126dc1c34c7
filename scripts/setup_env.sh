#!/usr/bin/env bash
# Create (or reuse) a virtual environment with ssm-jax and its test extras installed.
# Usage: source scripts/setup_env.sh    (sets $PY to the environment's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
PY="$VENV/bin/python"
export PY

#!/usr/bin/env bash
# Sets up (or reuses) the virtual environment, then runs one of the project's jobs.
#   bash tools/dev.sh demo [args]   the main job on the built-in data (tools/demo.py)
#   bash tools/dev.sh test [args]   the test suite (pytest)
#   bash tools/dev.sh lint          ruff check and ruff format --check (ruff.toml)
#   bash tools/dev.sh setup         only create or update the environment
# LVMM_VENV chooses where the environment lives (default: .venv in the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${LVMM_VENV:-$root/.venv}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[lvmm] creating virtual environment in $venv"
  "$py" -m venv "$venv"
fi
# Reinstall only when the dependency files changed since the last install.
stamp="$venv/.lvmm-install-stamp"
want="$(cat setup.py constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[lvmm] installing dependencies (a few minutes the first time)"
  "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
export WANDB_MODE="${WANDB_MODE:-offline}"

job="${1:-demo}"; shift || true
case "$job" in
  demo) exec "$venv/bin/python" tools/demo.py "$@" ;;
  test) exec "$venv/bin/python" -m pytest -n "${LVMM_TEST_WORKERS:-2}" "$@" ;;  # two workers: the 2-core CI
  lint) "$venv/bin/ruff" check . && exec "$venv/bin/ruff" format --check . ;;
  setup) echo "[lvmm] environment ready: $venv" ;;
  *) echo "usage: bash tools/dev.sh {demo|test|lint|setup} [args]" >&2; exit 2 ;;
esac

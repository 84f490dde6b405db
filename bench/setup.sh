#!/usr/bin/env bash
# Creates .venv-func-python (gitignored) for the func-python side of bench/runtime.py.
# Usage: bash bench/setup.sh   (PYTHON=python3.12 bash bench/setup.sh to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv-func-python/bin/python ]; then
  "$python" -m venv .venv-func-python
fi
.venv-func-python/bin/pip install --quiet --disable-pip-version-check -r bench/requirements-func-python.txt
.venv-func-python/bin/python -c "import func_python.cloudevent" && echo "ready: .venv-func-python"
command -v wrk >/dev/null || echo "wrk is missing: apt-get install -y wrk" >&2

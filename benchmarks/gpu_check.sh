#!/usr/bin/env bash
# Everything that needs a GPU, in one run (benchmarks/gpu_check.py says what it checks):
#   bash benchmarks/gpu_check.sh [--dry-run] [--output OUTPUT] [--results FILE]
# --dry-run: the same checks on CPU at tiny sizes (CI runs it). On a GPU machine whose Python
# holds torch and transformers but not longmix, the checkout itself is imported (its `longmix`
# folder), and wheels carried in benchmarks/.gpu/wheels (e.g. mosaicml-streaming, for the
# smoke check) are installed from there without an index.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
if [[ -d benchmarks/.gpu/wheels ]]; then
  "$python" -m pip install --quiet --no-index --no-deps --find-links benchmarks/.gpu/wheels \
    benchmarks/.gpu/wheels/*.whl
fi
if ! "$python" -c "import longmix" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$python" benchmarks/gpu_check.py "$@"

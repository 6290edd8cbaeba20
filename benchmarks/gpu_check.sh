#!/usr/bin/env bash
# Everything that needs a GPU, in one run (benchmarks/gpu_check.py says what it checks):
#   bash benchmarks/gpu_check.sh [--dry-run] [--output OUTPUT] [--results FILE]
# --dry-run: the same checks on CPU at tiny sizes (CI runs it). On a GPU machine whose Python
# holds torch and transformers but not longmix, the checkout itself is imported (its `longmix`
# folder), and wheels carried in benchmarks/.gpu/wheels (e.g. mosaicml-streaming, for the
# smoke check) are installed from there without an index. Paths are the caller's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
if [[ -d "$repo/benchmarks/.gpu/wheels" ]]; then
  "$python" -m pip install --quiet --no-index --no-deps "$repo"/benchmarks/.gpu/wheels/*.whl
fi
if ! "$python" -c "import longmix" 2>/dev/null; then
  export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$python" "$repo/benchmarks/gpu_check.py" "$@"

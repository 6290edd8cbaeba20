#!/usr/bin/env bash
# The one way longmix is installed: `make demo` and `make test` (so CI) and the Docker image
# all run this script.
#   scripts/install.sh VENV [EXTRAS] [--editable]
# VENV: the virtual environment to create (or reuse); EXTRAS: e.g. `train,test` (`train`:
# validate, smoke and the trainer; without it, what `prepare` needs); --editable for a
# checkout you work in. Python is $PYTHON (default python3), 3.11 or newer.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:?usage: scripts/install.sh VENV [EXTRAS] [--editable]}
extras=${2:-}
mode=${3:-}
target="."
if [[ -n "$extras" ]]; then
  target=".[$extras]"
fi

"${PYTHON:-python3}" -m venv "$venv"
if [[ "$mode" == "--editable" ]]; then
  "$venv/bin/python" -m pip install --quiet -e "$target"
else
  "$venv/bin/python" -m pip install --quiet "$target"
fi
modules="longmix.pipeline.cli, longmix.stages.logic, pyspark, transformers"
if [[ ",$extras," == *",train,"* ]]; then
  modules="$modules, streaming, torch"
fi
"$venv/bin/python" -c "import $modules" \
  || { echo "install.sh: longmix does not import from $venv" >&2; exit 1; }
if [[ "$mode" == "--editable" ]]; then
  # A checkout's embedded runs start seconds faster with an archive of the driver JVM's
  # classes (pipeline/jvm_classes.py; `python -m longmix.pipeline.spark` writes it): about a minute, once.
  "$venv/bin/python" -m longmix.pipeline.spark \
    || echo "install.sh: no JVM class archive written; runs start a few seconds slower" >&2
fi

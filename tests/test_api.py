"""The Python API in a process that made its own SparkSession, as a notebook does: `prepare`
on the caller's session (left running), an output read where it was moved to, and a session
whose workers cannot import longmix refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from tests.test_package import user_project

NOTEBOOK = """
import json, os, shutil, sys
from pathlib import Path
from pyspark.sql import SparkSession
import longmix
from longmix.pipeline.demo import build_corpus
from longmix.pipeline.presets import config_path

work = Path(sys.argv[1])
build_corpus(work / "corpus")
os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this kernel's Python
spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
result = longmix.prepare(
    config_path("demo"),
    overrides=[f"run.workdir={work}", f"run.cards={work / 'cards'}"],
    spark=spark,
)
still_active = spark.range(5).count() == 5 and not spark.sparkContext._jsc.sc().isStopped()
moved = work / "elsewhere" / "copy"
shutil.copytree(result.output, moved)
shutil.rmtree(result.output)
from streaming import StreamingDataset
args = longmix.streaming_args(str(moved))
dataset = StreamingDataset(**args, batch_size=1, shuffle=False)
ids = [len(sample["input_ids"]) for sample in dataset]
tok = longmix.tokenizer(str(moved))
print(json.dumps({
    "output": result.output,
    "outputs": result.outputs,
    "still_active": still_active,
    "epoch_size": args["epoch_size"],
    "read": len(ids),
    "valid": longmix.validate(str(moved)).ok,
    "round_trip": tok.decode(tok.encode_one("longmix, a notebook").tolist()),
    "mix_files": sorted(p.name for p in moved.iterdir()),
}))
"""


@pytest.mark.slow
def test_prepare_on_the_callers_session_and_an_output_read_where_it_was_moved(tmp_path):
    project = user_project(tmp_path / "project")
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=project,  # Spark's workers put it first on sys.path: its packages must not matter
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["output"] == str(tmp_path / "output")
    assert found["outputs"]["mds"] == found["output"]
    assert found["still_active"]
    assert found["read"] == found["epoch_size"] > 0
    assert found["valid"]
    assert found["round_trip"] == "longmix, a notebook"


def test_a_session_whose_workers_cannot_import_longmix_is_refused_in_one_line(tmp_path):
    # A worker Python that sees the packages but not the .pth that maps `longmix` (editable
    # install), nor the repository (the current folder is elsewhere).
    site = sysconfig.get_paths()["purelib"]
    worker = tmp_path / "python"
    worker.write_text(f'#!/bin/sh\nPYTHONPATH="{site}:$PYTHONPATH" exec {sys.executable} -S "$@"\n')
    worker.chmod(0o755)
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"text": "hello " * 50}) + "\n")
    code = f"""
import sys
from pyspark.sql import SparkSession
import longmix
from longmix.stages.logic.errors import LongmixError
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .getOrCreate())
config = {{"run": {{"output": "out", "until": "documents"}},
          "sources": {{"mine": {{"format": "jsonl", "path": {str(source)!r}}}}}}}
try:
    longmix.prepare(config, spark=spark)
except LongmixError as exc:
    print(exc)
    sys.exit(3)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYSPARK_PYTHON": str(worker)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    line = result.stdout.strip()
    assert "\n" not in line
    assert "cannot import longmix" in line and "No module named 'longmix'" in line
    assert f"os.environ['PYSPARK_PYTHON'] = {sys.executable!r}" in line
    assert not (tmp_path / "out").exists()

"""Progress in the user's units: files and bytes read, documents, sequences and tokens, the
rate and the time left; one line per update in a log, the totals last."""

from __future__ import annotations

import json
import math
import re

from longmix.pipeline.progress import describe
from longmix.pipeline.specs import DIRECT_BIN_BYTES
from tests.conftest import TEST_SPARK_CONF, cards_beside, prepare_cli
from tests.test_own_data import own_files


def test_reading_is_said_in_files_bytes_and_documents_with_the_time_left():
    planned = {"read_tasks": 4, "files": 40, "bytes": 4_000_000_000, "pack_tasks": 64}
    done = {"read_tasks": 1, "files": 10, "bytes": 1_000_000_000, "documents": 123_456}
    line = describe(planned, done, {"reading": 20.0})
    assert line == (
        "reading: 10 of 40 files, 1.0 GB of 4.0 GB, 123,456 documents, 50.0 MB/s, about 60 s left"
    )


def test_packing_is_said_in_tasks_sequences_and_tokens_once_every_read_task_ended():
    planned = {"read_tasks": 4, "files": 40, "bytes": 4_000_000_000, "pack_tasks": 64}
    done = {"read_tasks": 4, "pack_tasks": 16, "sequences": 2_000, "tokens": 131_072_000}
    line = describe(planned, done, {"reading": 80.0, "packing": 30.0})
    assert line == (
        "packing: 16 of 64 tasks, 2,000 sequences, 131.1 M tokens, 4.4 M tokens/s, about 90 s left"
    )


def test_a_logged_run_prints_progress_lines_and_ends_with_the_totals(tmp_path):
    output = tmp_path / "out"
    config = {
        "run": {"name": "progress", "output": str(output), "cards": cards_beside(output)},
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": own_files(tmp_path),
        "packing": {"sequence_length": 256},
    }
    result = prepare_cli(config, tmp_path, "progress", env={"LONGMIX_PROGRESS_SECONDS": "0.2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "_report.json").read_text())
    files, bins = report["input"]["files"], math.ceil(report["input"]["bytes"] / DIRECT_BIN_BYTES)
    # Own files need no shuffle: one task per bin of files, one bin per DIRECT_BIN_BYTES.
    assert report["pass"] == {
        "buckets": min(files, bins),
        "tasks": min(files, bins),
        "shuffle": False,
    }
    lines = [s for s in result.stderr.splitlines() if s.startswith("longmix: progress: ")]
    assert any("reading: " in s and f" of {files} files, " in s for s in lines), result.stderr
    final = re.fullmatch(
        r"longmix: progress: packing: (\d+) of (\d+) tasks, ([\d,]+) sequences, .*", lines[-1]
    )
    assert final and final[1] == final[2], lines[-1]
    packed = sum(n["sequences"] for lengths in report["packing"].values() for n in lengths.values())
    assert int(final[3].replace(",", "")) <= packed  # the bucket's partial ones come after

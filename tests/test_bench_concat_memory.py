"""The big-repository acceptance run: >= 200 MB in one repository, split at 32 MB, < 3 GB."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_huge_repository_is_split_within_memory(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/bench_concat_memory.py"),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    fields = dict(item.split("=") for item in result.stdout.strip().splitlines()[-1].split())
    assert float(fields["text_mb"]) >= 200
    assert int(fields["parts"]) >= 7
    assert float(fields["max_part_mb"]) <= 32 * 1024 * 1024 / 1e6 + 2
    assert float(fields["peak_rss_gb"]) < 3 * 1024**3 / 1e9

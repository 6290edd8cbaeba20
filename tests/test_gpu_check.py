"""The GPU check script, run as CI can: `--dry-run` on CPU at tiny sizes, the smoke check
on the demo output. On a GPU machine the same script runs at 64K (benchmarks/RESULTS.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_check(demo_run, tmp_path):
    workdir, _ = demo_run
    rows = tmp_path / "rows.md"
    result = subprocess.run(
        [
            "bash",
            str(REPO / "benchmarks/gpu_check.sh"),
            "--dry-run",
            "--output",
            str(workdir / "output"),
            "--results",
            str(rows),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    checks = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("check=")]
    assert checks == [
        "check=flex_equals_documents",
        "check=throughput_documents",
        "check=throughput_full",
        "check=masking_speedup",
        "check=self_extend_2L",
        "check=smoke",
    ]
    statuses = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("check=")]
    assert statuses == ["ok", "measured", "measured", "measured", "ok", "ok"], result.stdout
    assert "skipped" not in result.stdout
    assert rows.read_text().count("| ok |") == 3

"""`longmix demo` end to end, as `make demo` runs it, then `longmix smoke` on its output."""

import json
import subprocess
import sys

import pytest

from longmix.pipeline.config import load_config
from longmix.pipeline.presets import config_path
from longmix.pipeline.validate import validate
from longmix.stages.logic.storage import StorageOptions


@pytest.mark.slow
def test_demo_runs_every_source(demo_run):
    tmp_path, result = demo_run
    assert "demo done" in result.stderr
    report = json.loads((tmp_path / "output/_report.json").read_text())
    assert set(report["documents"]) == set(load_config(config_path("demo")).sources)
    repos = report["documents"]["stack"]["thestackv1_concat_by_repo"]
    assert repos["documents"] == repos["groups"] >= 5
    assert report["sources"]["slimpajama"]["skipped"]["invalid_json"]["count"] == 1
    documents = sum(n["documents"] for per in report["documents"].values() for n in per.values())
    packed = sum(n["documents_in"] for per in report["packing"].values() for n in per.values())
    assert packed == documents
    assert (tmp_path / "output/config.resolved.yaml").exists()
    assert report["tokenizer"]["bos_id"] == 128000
    for domain, lengths in report["packing"].items():
        for length, numbers in lengths.items():
            assert numbers["tokens_accounted"], (domain, length)
            assert numbers["tokens_out"] == numbers["sequences"] * int(length)
    result = validate(str(tmp_path / "output"), StorageOptions())
    assert result.ok, result.failures[:5]
    assert sum(result.samples.values()) == sum(
        n["sequences"] for lengths in report["packing"].values() for n in lengths.values()
    )
    saved = json.loads((tmp_path / "output/_stats.json").read_text())
    command = [sys.executable, "-m", "longmix", "stats", str(tmp_path / "output")]
    shards = subprocess.run([*command, "--from-shards", "--json"], capture_output=True, text=True)
    assert shards.returncode == 0, shards.stderr[-2000:]
    read_back = json.loads(shards.stdout)["stats"]["output"]
    assert read_back["histograms"]["packed"] == saved["histograms"]["packed"]
    assert read_back["over"]["packed"] == saved["over"]["packed"]
    assert (tmp_path / "data_cards/demo/README.md").exists()
    smoke = subprocess.run(
        [sys.executable, "-m", "longmix", "smoke", str(tmp_path / "output"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
    trained = json.loads(smoke.stdout)
    assert trained["loss"]["decreased"] and trained["loss"]["finite"]
    assert all(row["ok"] for row in trained["domains"])
    assert trained["runtime"]["attention"] == "documents"
    assert "`longmix smoke` passed" in (tmp_path / "data_cards/demo/README.md").read_text()

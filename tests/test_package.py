"""longmix installed is the one package `longmix`: the wheel holds nothing else, and neither
the CLI nor Spark's Python workers pick up a user's own `pipeline` or `stages` packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from longmix.pipeline.demo import build_corpus
from longmix.pipeline.presets import config_path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_longmix_and_its_dist_info_only(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=REPO,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("longmix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "longmix",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    assert "longmix/pipeline/cli.py" in names
    assert "longmix/stages/logic/pack.py" in names
    assert "longmix/configs/demo.yaml" in names


def test_the_editable_install_adds_no_other_top_level_name(tmp_path):
    names = ("pipeline", "stages", "tests", "benchmarks", "demo")
    code = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


def user_project(folder: Path) -> Path:
    """A user's project with its own `pipeline` and `stages` packages, which fail on import."""
    for name in ("pipeline", "stages"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ImportError('the user\\'s own {name}')\n"
        )
        (folder / name / "read.py").write_text("")
    (folder / "pipeline.py").write_text("raise ImportError('the user\\'s pipeline.py')\n")
    return folder


@pytest.mark.slow
def test_prepare_runs_from_a_folder_with_its_own_pipeline_and_stages(tmp_path):
    project = user_project(tmp_path / "project")
    build_corpus(tmp_path / "corpus")
    settings = [f"run.workdir={tmp_path}", f"run.cards={tmp_path / 'cards'}"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "longmix",
            "prepare",
            str(config_path("demo")),
            *(a for s in settings for a in ("--set", s)),
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": "."},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "output" / "mix.yaml").exists()

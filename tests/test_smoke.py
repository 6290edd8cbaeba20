"""`longmix smoke` over a prepared output: the loss falls, every domain gets its share of the
trained tokens, SFT masks carry no loss, and what must fail fails with a non-zero exit."""

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from longmix.pipeline.cli import main
from longmix.pipeline.config import SmokeConfig
from longmix.pipeline.trainer.balance import balance, device_order
from longmix.pipeline.trainer.data import Vocabulary, open_output, read_epoch
from longmix.pipeline.trainer.masking import IGNORE
from longmix.pipeline.trainer.model import ModelShape, attention_inputs, build_model, loss_sum
from longmix.pipeline.trainer.report import SMOKE_FILE, loss_summary
from longmix.pipeline.trainer.train import progress_lines, to_device
from longmix.pipeline.validate import validate
from longmix.stages.logic.storage import StorageOptions


@pytest.fixture
def output(tmp_path, reference) -> Path:
    """A private copy: smoke writes its report and card beside the output."""
    copy = tmp_path / "out"
    shutil.copytree(reference, copy)
    return copy


def smoke_json(path: Path | str, capsys, *args: str) -> tuple[int, dict]:
    code = main(["smoke", str(path), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_smoke_trains_on_the_mix_and_reports(output, capsys):
    code, report = smoke_json(output, capsys, "--steps", "12")
    assert code == 0, report["problems"]
    assert report["ok"] and report["loss"]["finite"]
    assert report["loss"]["last"] < 0.99 * report["loss"]["first"]
    assert report["samples"] == 12 * 2 * 2 == len(report["history"]) * 4
    assert sum(r["tokens"] for r in report["history"]) == report["tokens"]
    # Every document's first token and every SFT prompt token is left out of the loss.
    assert 0 < report["trained_tokens"] < report["tokens"]
    assert sum(row["tokens"] for row in report["domains"]) == report["tokens"]
    mix = yaml.safe_load((output / "mix.yaml").read_text())
    assert {row["domain"] for row in report["domains"]} == {
        n["domain"] for n in mix["domains"].values()
    }
    for row in report["domains"]:
        assert abs(row["share"] - row["expected"]) <= row["allowed"], row
    # The packed short data (arXiv, chats) attends far less than full causal attention would.
    assert report["attention"]["pairs_masked"] < report["attention"]["pairs_full"]
    assert report["balance"]["imbalance_with"] <= report["balance"]["imbalance_without"]
    assert json.loads((output / SMOKE_FILE).read_text()) == report
    card = (output / "README.md").read_text()
    assert "`longmix smoke` passed" in card and "| arxiv |" in card.split("## Smoke test")[1]
    assert "](card/smoke_loss.png)" in card
    with Image.open(output / "card/smoke_loss.png") as plot:
        assert plot.size == (800, 450)


def test_streaming_allots_each_directory_its_proportion(output):
    """One epoch of N samples gives each directory floor or ceil of N x its proportion."""
    storage = StorageOptions()
    found = open_output(str(output), storage)
    samples = read_epoch(found, 40, 0, storage, output / "_cache")
    counts = {name: 0 for name in found.directories}
    for sample in samples:
        counts[sample.directory] += 1
    for name, numbers in found.directories.items():
        expected = (
            40 * numbers["proportion"] / sum(n["proportion"] for n in found.directories.values())
        )
        assert math.floor(expected) <= counts[name] <= math.ceil(expected), name


def test_sft_mask_carries_no_loss(output):
    """Only tokens with mask 1 are targets, and the loss is the cross-entropy over them."""
    storage = StorageOptions()
    found = open_output(str(output), storage)
    samples = read_epoch(found, 40, 0, storage, output / "_cache")
    chat = next(s for s in samples if s.domain == "ultrachat")
    assert 0 < chat.mask.sum() < chat.length
    vocabulary = Vocabulary.of([chat], "observed", found.tokenizer["vocab_size"])
    ids, targets, _ = to_device(chat, vocabulary, torch.device("cpu"))
    starts = chat.indices[:, 0].astype(np.int64)
    untrained = (chat.mask == 0) | np.isin(np.arange(chat.length), starts)
    assert (targets.numpy() == IGNORE).tolist() == untrained.tolist()
    shape = ModelShape(vocabulary.size, 32, 1, 2, 1, 64, 8e6, chat.length)
    model = build_model(shape, "documents", 0)
    inputs = attention_inputs(chat.indices, chat.length, "documents", torch.device("cpu"))
    with torch.no_grad():
        total = loss_sum(model, ids, targets, inputs)
        logits = model(input_ids=ids[None], **inputs).logits[0]
    trained = np.flatnonzero(~untrained) - 1  # position t predicts token t + 1
    expected = torch.nn.functional.cross_entropy(logits[trained], ids[trained + 1], reduction="sum")
    assert torch.allclose(total, expected, rtol=1e-5)


def test_off_shares_fail_the_run(output, capsys):
    """mix.yaml's streams read with the wrong proportions: the shares give it away."""
    mix = yaml.safe_load((output / "mix.yaml").read_text())
    domains = mix["domains"]
    largest = max(domains, key=lambda d: domains[d]["proportion"])
    smallest = min(domains, key=lambda d: domains[d]["proportion"])
    domains[largest]["proportion"], domains[smallest]["proportion"] = (
        domains[smallest]["proportion"],
        domains[largest]["proportion"],
    )
    (output / "mix.yaml").write_text(yaml.safe_dump(mix))
    assert not validate(str(output), StorageOptions()).ok  # validate sees it too
    code, report = smoke_json(output, capsys, "--steps", "4", "--no-validate")
    assert code == 1 and not report["ok"]
    off = {row["domain"] for row in report["domains"] if not row["ok"]}
    assert domains[largest]["domain"] in off
    assert any("of trained tokens, mix.yaml says" in p for p in report["problems"])


def test_a_model_that_does_not_learn_fails_the_run(output, capsys):
    code, report = smoke_json(output, capsys, "--steps", "4", "--set", "smoke.lr=1e-9")
    assert code == 1
    assert report["problems"][0].startswith("loss did not decrease")


def test_non_finite_loss_is_a_failure():
    summary = loss_summary([9.0, float("nan"), 8.0, 7.0], 0.01)
    assert not summary["finite"]


def test_an_unreadable_shard_stops_the_run_naming_it(output, capsys):
    for shard in output.glob("arxiv/**/shard.*.mds"):
        shard.write_bytes(shard.read_bytes()[:100])
    assert main(["smoke", str(output), "--steps", "4", "--no-validate"]) == 2
    err = capsys.readouterr().err
    assert "a shard cannot be read" in err and "corrupted_shard" in err
    assert f"{output}/arxiv/" in err


def test_reordering_evens_out_the_devices():
    """Two devices, two micro-batches each: in stream order every micro-step pairs a long and
    a short one; sorted, the long ones meet, then the short ones."""
    costs = [100, 1, 1, 100]
    assert device_order(costs, 2, reorder=False).tolist() == [[0, 2], [1, 3]]
    assert device_order(costs, 2, reorder=True).tolist() == [[0, 3], [1, 2]]
    result = balance([costs], 2)
    assert result.imbalance_without == pytest.approx(200 / 101)
    assert result.imbalance_with == pytest.approx(1.0)
    assert result.speedup == pytest.approx(200 / 101)


def test_settings_come_from_the_run_and_can_be_overridden(output, capsys):
    saved = yaml.safe_load((output / "config.resolved.yaml").read_text())
    assert SmokeConfig.model_validate(saved["smoke"]) == SmokeConfig()
    assert main(["smoke", str(output), "--set", "run.seed=3"]) == 2
    assert "takes only smoke.* keys" in capsys.readouterr().err
    assert main(["smoke", str(output), "--set", "smoke.steps=1"]) == 2
    assert "smoke.steps" in capsys.readouterr().err
    assert main(["smoke", str(output), "--config", str(output / "missing.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_smoke_evaluates_held_out_loss_by_position_and_past_the_trained_length(output, capsys):
    code, report = smoke_json(output, capsys, "--steps", "8")
    assert code == 0, report["problems"]
    held = report["held_out"]
    assert held["samples"] > 0 and held["documents"] > 0
    directories = yaml.safe_load((output / "mix.yaml").read_text())["domains"]
    assert set(report["position_loss"]) <= set(directories)
    for directory, bins in report["position_loss"].items():
        assert bins[0][0] == 0 and bins[-1][1] <= directories[directory]["length"]
        assert all(tokens > 0 and math.isfinite(loss) for _, _, tokens, loss in bins)
    extension = report["extension"]
    trained = max(n["length"] for n in directories.values())
    assert extension["lengths"] == [trained, 2 * trained, 4 * trained]
    assert extension["neighbor_window"] == trained // 4
    assert extension["max_length"] >= 4 * trained
    assert extension["rope"][0] is not None and extension["self_extend"][0] is not None
    for method in ("rope", "self_extend"):
        assert all(v is None or math.isfinite(v) for v in extension[method])
    card = (output / "README.md").read_text()
    assert "loss by position" in card and "](card/smoke_evaluation.png)" in card
    code, skipped = smoke_json(output, capsys, "--steps", "4", "--no-eval")
    assert "position_loss" not in skipped and "extension" not in skipped


def test_a_log_gets_a_progress_line_per_step_a_terminal_none(output, capsys):
    main(["smoke", str(output), "--steps", "4", "--no-eval"])
    lines = [s for s in capsys.readouterr().err.splitlines() if s.startswith(PROGRESS)]
    assert lines[0].startswith(f"{PROGRESS}reading 16 samples")
    steps = [s.split(",")[0] for s in lines if s.startswith(f"{PROGRESS}step ")]
    assert steps == [f"{PROGRESS}step {k} of 4" for k in range(1, 5)]
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    progress_lines(True, terminal)("step 1 of 4")
    assert terminal.getvalue() == ""  # the bar shows it there


PROGRESS = "longmix: progress: smoke: "

"""`longmix validate` finds each kind of broken output, and names where: one test per rule,
on outputs written by longmix's own MDS writer and commit, then damaged."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from longmix.pipeline.mixfile import mix_section, write_mix_file
from longmix.pipeline.validate import validate
from longmix.stages.logic.mds import MdsSpec, committed, publish, write_unit
from longmix.stages.logic.mix import MixTarget
from longmix.stages.logic.storage import StorageOptions

VOCAB = 1000
LENGTHS = {"code-64": ("code", 64), "web": ("web", 32)}


def sample(domain: str, length: int, seed: int, cut: int | None = None) -> dict:
    ids = np.random.default_rng(seed).integers(0, VOCAB, length).astype(np.uint32)
    cut = cut or length // 3
    return {
        "input_ids": ids,
        "indices": np.array([[0, cut], [cut, length]], np.int64),
        "domain": domain,
        "length": length,
    }


def build(root: Path, edit=None) -> Path:
    """A small valid output (two directories, several shards each); `edit(directory,
    samples)` may damage the samples before they are written."""
    spec = MdsSpec(root=str(root), storage=StorageOptions(), shard_size=1500)
    targets = {}
    for directory, (domain, length) in LENGTHS.items():
        samples = [sample(domain, length, seed) for seed in range(12)]
        if edit:
            edit(directory, samples)
        write_unit(spec, directory, 0, samples, attempt=0)
        targets[(domain, length)] = MixTarget(domain, length, directory, 12, 12)
    records = committed(spec)
    publish(spec, records)
    write_mix_file(str(root), mix_section(targets, records, True), 0.01, True, StorageOptions())
    (root / "_report.json").write_text(json.dumps({"tokenizer": {"vocab_size": VOCAB}}))
    return root


def rules(root: Path) -> set[tuple]:
    return {(f.directory, f.rule) for f in validate(str(root), StorageOptions()).failures}


def first_shard(root: Path, directory: str) -> Path:
    index = json.loads((root / directory / "index.json").read_text())
    return root / directory / index["shards"][0]["raw_data"]["basename"]


def test_a_valid_output_passes_with_counts(tmp_path):
    result = validate(str(build(tmp_path)), StorageOptions())
    assert result.ok, result.failures
    assert result.samples == {"code-64": 12, "web": 12}
    assert result.tokens == {"code-64": 12 * 64, "web": 12 * 32}
    assert len(json.loads((tmp_path / "web/index.json").read_text())["shards"]) > 1


def test_a_sample_one_token_short(tmp_path):
    def shorten(directory, samples):
        if directory == "web":
            samples[4] = {**sample("web", 31, 99), "length": 31}

    failures = validate(str(build(tmp_path, shorten)), StorageOptions()).failures
    assert [(f.directory, f.rule) for f in failures if f.rule == "length"] == [("web", "length")]
    assert next(f for f in failures if f.rule == "length").sample is not None


def test_a_gap_in_indices(tmp_path):
    def gap(directory, samples):
        if directory == "code-64":
            samples[2]["indices"] = np.array([[0, 20], [21, 64]], np.int64)

    assert rules(build(tmp_path, gap)) == {("code-64", "indices")}


def test_an_out_of_vocabulary_id(tmp_path):
    def oov(directory, samples):
        if directory == "web":
            samples[7]["input_ids"] = samples[7]["input_ids"].copy()
            samples[7]["input_ids"][5] = VOCAB

    assert rules(build(tmp_path, oov)) == {("web", "vocabulary")}


def test_a_missing_shard(tmp_path):
    root = build(tmp_path)
    first_shard(root, "web").unlink()
    found = rules(root)
    assert ("web", "missing_shard") in found
    assert ("web", "sample_count") in found  # its samples are missing too


def test_a_corrupted_shard(tmp_path):
    root = build(tmp_path)
    shard = first_shard(root, "code-64")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert ("code-64", "corrupted_shard") in rules(root)


def test_a_duplicated_sample_is_a_warning_about_the_data(tmp_path):
    def duplicate(directory, samples):
        if directory == "web":
            samples[9] = samples[3]

    result = validate(str(build(tmp_path, duplicate)), StorageOptions())
    assert result.ok, result.failures
    (warning,) = result.warnings
    assert warning.startswith("web: 1 distinct samples appear more often than repeat allows (1)")
    assert "`dedup: exact` removes them" in warning


def test_a_unit_written_twice_and_a_shard_listed_twice(tmp_path):
    root = build(tmp_path)
    index_file = root / "web/index.json"
    index = json.loads(index_file.read_text())
    twice = {**index, "shards": [*index["shards"], index["shards"][0]]}
    index_file.write_text(json.dumps(twice))
    assert ("web", "shard_listed_twice") in rules(root)
    copy = json.loads(json.dumps(index["shards"][0]))
    folder, name = copy["raw_data"]["basename"].split("/")
    other = folder.replace("-a0", "-a1")
    (root / "web" / other).mkdir()
    (root / "web" / other / name).write_bytes((root / "web" / folder / name).read_bytes())
    copy["raw_data"]["basename"] = f"{other}/{name}"
    index_file.write_text(json.dumps({**index, "shards": [*index["shards"], copy]}))
    assert ("web", "unit_written_twice") in rules(root)


def test_proportions_off_by_more_than_the_tolerance(tmp_path):
    root = build(tmp_path)
    mix = yaml.safe_load((root / "mix.yaml").read_text())
    mix["domains"]["web"]["target_token_fraction"] += 0.05
    mix["domains"]["code-64"]["target_token_fraction"] -= 0.05
    (root / "mix.yaml").write_text(yaml.safe_dump(mix))
    assert rules(root) == {("web", "proportion"), ("code-64", "proportion")}


def test_cli_lists_failures_and_exits_non_zero(tmp_path):
    root = build(tmp_path)
    first_shard(root, "web").unlink()
    command = [sys.executable, "-m", "longmix", "validate", str(root)]
    shown = subprocess.run(command, capture_output=True, text=True)
    assert shown.returncode == 1
    assert "web, b00000-a0/shard.00000.mds: missing_shard" in shown.stdout
    machine = subprocess.run([*command, "--json"], capture_output=True, text=True)
    assert machine.returncode == 1
    assert {f["rule"] for f in json.loads(machine.stdout)["failures"]} >= {"missing_shard"}


@pytest.mark.parametrize("dtype", ["uint32", "int64"])
def test_both_indices_dtypes_validate(tmp_path, dtype):
    spec = MdsSpec(root=str(tmp_path), storage=StorageOptions(), indices_dtype=dtype)
    write_unit(spec, "web", 0, [sample("web", 32, k) for k in range(3)], attempt=0)
    records = committed(spec)
    publish(spec, records)
    target = {("web", 32): MixTarget("web", 32, "web", 3, 3)}
    write_mix_file(str(tmp_path), mix_section(target, records, True), 0.01, True, StorageOptions())
    (tmp_path / "_report.json").write_text(json.dumps({"tokenizer": {"vocab_size": VOCAB}}))
    assert validate(str(tmp_path), StorageOptions()).ok


def test_zstd_shards_validate_and_stream(tmp_path):
    from streaming import StreamingDataset

    spec = MdsSpec(root=str(tmp_path), storage=StorageOptions(), compression="zstd")
    written = [sample("web", 32, k) for k in range(5)]
    write_unit(spec, "web", 0, written, attempt=0)
    records = committed(spec)
    publish(spec, records)
    target = {("web", 32): MixTarget("web", 32, "web", 5, 5)}
    write_mix_file(str(tmp_path), mix_section(target, records, True), 0.01, True, StorageOptions())
    (tmp_path / "_report.json").write_text(json.dumps({"tokenizer": {"vocab_size": VOCAB}}))
    assert list((tmp_path / "web").rglob("*.mds.zstd")) and not list(
        (tmp_path / "web").rglob("*.mds")
    )
    assert validate(str(tmp_path), StorageOptions()).ok
    data = StreamingDataset(local=str(tmp_path / "web"), shuffle=False, batch_size=1)
    assert [data[i]["input_ids"].tolist() for i in range(5)] == [
        s["input_ids"].tolist() for s in written
    ]


def test_commits_of_another_config_are_cleared_before_resuming(tmp_path):
    from longmix.stages.logic.mds import clear_stale

    old = MdsSpec(root=str(tmp_path), storage=StorageOptions(), digest="old")
    write_unit(old, "web", 0, [sample("web", 32, k) for k in range(3)], attempt=0)
    same = MdsSpec(root=str(tmp_path), storage=StorageOptions(), digest="old")
    assert not clear_stale(same) and committed(same)
    new = MdsSpec(root=str(tmp_path), storage=StorageOptions(), digest="new")
    assert clear_stale(new)
    assert committed(new) == {} and not (tmp_path / "web").exists()

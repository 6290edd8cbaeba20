"""The mix as MDS shards: read back with mosaicml-streaming over mix.yaml, ProLong's reading of
`indices`, exactly-once under task failure and speculation, resume after a killed driver."""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from longmix.pipeline.driver import prepare
from longmix.pipeline.mixfile import streaming_args
from longmix.pipeline.validate import validate
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions
from tests.conftest import (
    TEST_SPARK_CONF,
    cards_beside,
    make_config,
    prepare_cli,
    prepare_command,
    start_and_wait_for,
)
from tests.test_pack_spark import PACKING, sources

MIX = {
    "tokens": 200_000,
    "domains": {
        "thestackv1_concat_by_repo": 0.3,  # fewer sequences than asked: repeated
        "book": 0.2,  # more than asked: a seeded sample
        "arxiv": 0.3,
        "ultrachat": 0.2,
    },
}


def read_mix(output: Path) -> dict[str, list[dict]]:
    """Every sample of every directory, through streaming.StreamingDataset over mix.yaml."""
    from streaming import StreamingDataset

    out = {}
    for stream in streaming_args(str(output))["streams"]:
        data = StreamingDataset(streams=[stream], shuffle=False, batch_size=1)
        out[Path(stream.local).name] = [data[i] for i in range(len(data))]
    return out


def epoch_counts(output: Path, mix: dict) -> dict[str, int]:
    """Samples per directory in one epoch of StreamingDataset over mix.yaml's streams and
    epoch_size, as ProLong's trainer builds it."""
    from streaming import StreamingDataset

    directory = {(n["domain"], n["length"]): name for name, n in mix["domains"].items()}
    data = StreamingDataset(**streaming_args(str(output)), shuffle=False, batch_size=1)
    counts = dict.fromkeys(mix["domains"], 0)
    for sample in data:
        counts[directory[(sample["domain"], int(sample["length"]))]] += 1
    return counts


def fingerprint(output: Path) -> dict[str, list[str]]:
    """Per directory of mix.yaml, the sha1 of every sample's tokens in index order (the order
    an unshuffled reader sees them), read with streaming's shard readers: a StreamingDataset
    per directory would hold shared memory and file descriptors until the process ends."""
    from longmix.pipeline.shards import shard_reader

    mix = yaml.safe_load((output / "mix.yaml").read_text())
    out = {}
    for name in mix["domains"]:
        folder = output / name
        hashes = out.setdefault(name, [])
        for shard in json.loads((folder / "index.json").read_text())["shards"]:
            with tempfile.TemporaryDirectory() as scratch:
                reader, problem = shard_reader(folder, shard, Path(scratch))
                assert problem is None, problem
                for i in range(reader.samples):
                    ids = np.asarray(reader.get_item(i)["input_ids"])
                    hashes.append(hashlib.sha1(ids.tobytes()).hexdigest())
    return out


def shard_hashes(output: Path) -> dict[str, list[str]]:
    """Per directory, the sha1 of each shard file in index order."""
    out = {}
    for index in sorted(output.glob("*/index.json")):
        shards = json.loads(index.read_text())["shards"]
        out[index.parent.name] = [s["raw_data"]["hashes"]["sha1"] for s in shards]
    return out


def stray_folders(output: Path) -> list[str]:
    """Folders inside output directories that no merged index refers to."""
    stray = []
    for index in output.glob("*/index.json"):
        used = {
            s["raw_data"]["basename"].split("/")[0] for s in json.loads(index.read_text())["shards"]
        }
        stray += [p.name for p in index.parent.iterdir() if p.is_dir() and p.name not in used]
    return stray


def cli_config(root, output: Path, **overrides) -> dict:
    spark = overrides.pop("spark", {})
    return {
        "run": {
            "name": output.name,
            "output": str(output),
            "seed": 3,
            "cards": cards_beside(output),
        },
        "spark": {
            "master": spark.get("master", "local[2]"),
            "conf": {**TEST_SPARK_CONF, **spark.get("conf", {})},
        },
        "sources": sources(root),
        "packing": PACKING,
        "mix": MIX,
        "mds": {"shard_size": 16384, **overrides.pop("mds", {})},
        **overrides,
    }


def test_streaming_reads_every_sample_of_the_mix(reference):
    report = json.loads((reference / "_report.json").read_text())
    mix = yaml.safe_load((reference / "mix.yaml").read_text())
    samples = read_mix(reference)
    assert (
        set(samples)
        == set(mix["domains"])
        == {
            "thestackv1_concat_by_repo-1024",
            "thestackv1_concat_by_repo-512",
            "book-512",
            "arxiv",
            "ultrachat",
        }
    )
    for name, numbers in mix["domains"].items():
        assert len(samples[name]) == numbers["sequences"]
        for sample in samples[name]:
            assert sample["input_ids"].dtype == np.uint32
            assert len(sample["input_ids"]) == sample["length"] == numbers["length"]
            assert sample["indices"].dtype == np.uint32 and sample["indices"].shape[1] == 2
            assert sample["domain"] == numbers["domain"]
            assert ("mask" in sample) == (numbers["domain"] in ("ultrachat", "arxiv"))
    # Every packed sequence is stored once; the budget is an epoch of mix.yaml's streams:
    # round(budget x fraction / length) samples per directory, fractions a domain shares
    # between its lengths following their tokens.
    assert mix["materialized"] is False
    for numbers in mix["domains"].values():
        assert numbers["sequences"] == numbers["available_sequences"]
        assert abs(numbers["token_fraction"] - numbers["target_token_fraction"]) < 0.005
    assert mix["domains"]["book-512"]["epoch_samples"] == round(200_000 * 0.2 / 512)
    assert mix["domains"]["book-512"]["repeat"] < 1 < mix["domains"]["ultrachat"]["repeat"]
    assert mix["epoch_size"] == sum(n["epoch_samples"] for n in mix["domains"].values())
    drawn = epoch_counts(reference, mix)
    for name, numbers in mix["domains"].items():
        assert abs(drawn[name] - numbers["epoch_samples"]) <= 1, (name, drawn)
    assert report["mix"] == mix["domains"]
    assert validate(str(reference), StorageOptions()).ok


def test_a_moved_output_reads_from_where_it_is(reference, tmp_path):
    moved = tmp_path / "elsewhere/output"
    shutil.copytree(reference, moved, ignore=shutil.ignore_patterns("_work"))
    text = (moved / "mix.yaml").read_text()
    assert str(reference) not in text  # nothing names where it was written
    mix = yaml.safe_load(text)
    drawn = epoch_counts(moved, mix)
    for name, numbers in mix["domains"].items():
        assert abs(drawn[name] - numbers["epoch_samples"]) <= 1, (name, drawn)
    assert validate(str(moved), StorageOptions()).ok


def test_prolong_collator_reading_of_indices(reference):
    """ProLong's collator: one sequence per [start, end), label -100 on each document's first
    token, so no token is predicted across a document boundary."""
    mix = yaml.safe_load((reference / "mix.yaml").read_text())
    for name, samples in read_mix(reference).items():
        segments = 0
        for sample in samples:
            ids, pieces = sample["input_ids"], []
            for start, end in sample["indices"].astype(np.int64):
                labels = ids[start:end].astype(np.int64)
                labels[0] = -100
                pieces.append(labels)
            labels = np.concatenate(pieces)
            assert len(labels) == sample["length"]
            assert (labels == -100).sum() == len(pieces)
            assert np.array_equal(labels[labels != -100], np.delete(ids, sample["indices"][:, 0]))
            segments += len(pieces)
        assert segments >= mix["domains"][name]["sequences"]


def without_torch(folder: Path) -> tuple[dict, Path]:
    """An environment in which torch, torchvision and streaming do not import (as where
    they are not installed: `importlib.util.find_spec` finds nothing), in the driver and
    in every Python worker Spark starts; each process that loaded it logs its pid."""
    blocker = folder / "no_torch"
    blocker.mkdir()
    log = blocker / "loaded"
    (blocker / "sitecustomize.py").write_text(
        "import os, sys\n"
        "for name in ('torch', 'torchvision', 'streaming'):\n"
        "    sys.modules[name] = None\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    log.write(f'{os.getpid()}\\n')\n"
    )
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}, log


@pytest.mark.slow
def test_a_dying_task_and_speculation_leave_every_sample_exactly_once_without_torch(
    tmp_path, mixed_corpus, reference
):
    """Also the prepare path's dependencies: it runs with torch unimportable everywhere."""
    config = cli_config(
        mixed_corpus,
        tmp_path / "out",
        spark={"master": "local[2,4]", "conf": {"spark.speculation": True}},
    )
    config["faults"] = {"fail_once": f"{tmp_path / 'failed'}:3"}
    env, loaded = without_torch(tmp_path)
    result = prepare_cli(config, tmp_path, "faulty", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "failed").exists()  # the hook did kill an attempt mid-unit
    assert len(set(loaded.read_text().split())) >= 3  # the driver and Spark's Python workers
    assert fingerprint(tmp_path / "out") == fingerprint(reference)
    assert stray_folders(tmp_path / "out") == []
    assert validate(str(tmp_path / "out"), StorageOptions()).ok


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_output(tmp_path, mixed_corpus, reference):
    config = cli_config(mixed_corpus, tmp_path / "out", mds={"shard_size": 16384, "partitions": 1})
    commits = tmp_path / "out/_commits"
    held = tmp_path / "held"  # the first unit committed, its task waits to be killed
    process = start_and_wait_for(
        held,
        prepare_command({**config, "faults": {"hold_after_commit": str(held)}}, tmp_path, "killed"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {p: p.read_text() for p in commits.rglob("*.json")}
    assert len(before) > 0
    result = prepare_cli(config, tmp_path, "resumed")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = re.search(r"longmix: resuming: (\d+) of at most \d+ units", result.stderr)
    assert resumed and int(resumed.group(1)) >= len(before), result.stderr[-2000:]
    after = {p: p.read_text() for p in commits.rglob("*.json")}
    assert len(after) > len(before)  # it was killed half-way
    assert all(after[p] == text for p, text in before.items())  # committed work kept
    assert fingerprint(tmp_path / "out") == fingerprint(reference)
    assert shard_hashes(tmp_path / "out") == shard_hashes(reference)
    assert stray_folders(tmp_path / "out") == []
    again = prepare_cli(config, tmp_path, "again")  # a finished run: nothing to do
    assert again.returncode == 0 and "already complete" in again.stderr


def test_a_changed_mix_reuses_the_stored_sequences_and_a_materialized_mix_samples_them(
    tmp_path, mixed_corpus, spark
):
    def run(output: Path, **mix) -> dict:
        config = make_config(sources(mixed_corpus), output, packing=PACKING, mix={**MIX, **mix})
        return prepare(config).data

    stored = tmp_path / "stored"
    first = run(stored)
    hashes, samples = shard_hashes(stored), fingerprint(stored)
    smaller = run(stored, tokens=100_000)
    assert smaller["reused_stored_sequences"] is True
    assert "read_concatenate_tokenize_pack" not in smaller["stage_seconds"]
    assert shard_hashes(stored) == hashes  # only mix.yaml changed
    epoch = {name: n["epoch_samples"] for name, n in smaller["mix"].items()}
    assert epoch["book-512"] == round(100_000 * 0.2 / 512)
    assert validate(str(stored), StorageOptions()).ok

    materialized = run(tmp_path / "materialized", materialize=True)
    assert "mix_and_write_mds" in materialized["stage_seconds"]
    mix = yaml.safe_load((tmp_path / "materialized/mix.yaml").read_text())
    assert mix["materialized"] is True
    drawn = fingerprint(tmp_path / "materialized")
    for name, numbers in mix["domains"].items():
        wanted = first["mix"][name]["epoch_samples"]  # the same budget, stored once
        assert len(drawn[name]) == numbers["sequences"] == numbers["epoch_samples"] == wanted
        assert set(drawn[name]) <= set(samples[name])  # samples of the stored sequences
        copies = max(Counter(drawn[name]).values())
        assert copies <= max(1, math.ceil(numbers["repeat"]))
    assert validate(str(tmp_path / "materialized"), StorageOptions()).ok


def test_indices_dtype_int64_and_a_failing_shortfall(tmp_path, mixed_corpus, spark):
    config = make_config(
        sources(mixed_corpus),
        tmp_path / "out",
        packing=PACKING,
        mix={**MIX, "tokens": 100_000},
        mds={"indices_dtype": "int64"},
    )
    prepare(config)
    for samples in read_mix(tmp_path / "out").values():
        assert all(s["indices"].dtype == np.int64 for s in samples)
    short = make_config(
        sources(mixed_corpus),
        tmp_path / "short",
        packing=PACKING,
        mix={**MIX, "shortfall": "fail"},
    )
    with pytest.raises(LongmixError, match=r"thestackv1_concat_by_repo at \d+ needs .* but has"):
        prepare(short)

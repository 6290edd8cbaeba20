"""longmix never loses a user's data: it writes only into folders it owns, refuses inputs and
outputs that overlap, holds one run per output, and never replaces a README it did not write.
Each test is one of issue 12's reproductions, run as a user would (the CLI, its own process)."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from longmix.pipeline.lock import LOCK, LocalLock, S3Lock, run_lock
from longmix.pipeline.ownership import MARKER
from longmix.pipeline.validate import validate
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions
from tests.conftest import TEST_SPARK_CONF, make_config, prepare_cli, prepare_command


def fineweb_corpus(root: Path, files: int = 2, rows: int = 30) -> Path:
    for f in range(files):
        texts = [" ".join(corpus.sha1(f"{f}/{i}/{k}") for k in range(60)) for i in range(rows)]
        corpus.write_parquet(
            root / f"fineweb-edu/data/CC-MAIN-2024-10/{f:03d}_00000.parquet",
            [corpus.fineweb_row(t, i, edu=True) for i, t in enumerate(texts)],
            corpus.FINEWEB_EDU_SCHEMA,
        )
    return root


def one_source(root: Path, output: Path, **sections) -> dict:
    """The demo cut to one fineweb-edu source `s`, 4096-token sequences (issue 12's one.yaml)."""
    run = {"name": "one", "output": str(output), "seed": 1, "cards": str(output.parent / "cards")}
    return {
        "run": {**run, **sections.pop("run", {})},
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": {
            "s": {"preset": "fineweb-edu", "path": str(root / "fineweb-edu/data/*/*.parquet")}
        },
        "packing": {"sequence_length": 4096, "buckets": 4},
        "mds": {"shard_size": 1 << 20},
        **sections,
    }


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The run's one `longmix: error:` line, checked to come with no traceback of longmix's
    process. (Spark's Python daemon prints one of its own when the JVM kills a worker of a
    failed job: not longmix's to silence.)"""
    blocks = (result.stdout + result.stderr).split("Traceback (most recent call last):")[1:]
    ours = [b for b in blocks if "pyspark/daemon.py" not in b.splitlines()[1]]
    assert not ours, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("longmix: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_an_output_over_an_input_is_refused_and_the_input_kept(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus")
    before = snapshot(root)
    started = time.monotonic()
    result = prepare_cli(one_source(root, root), tmp_path, "over")
    assert result.returncode == 2
    assert "overlap" in one_error_line(result)
    assert time.monotonic() - started < 30  # refused before Spark starts
    assert snapshot(root) == before


def test_a_folder_of_user_files_is_refused_untouched(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus")
    output = tmp_path / "mine"
    (output / "sub").mkdir(parents=True)
    for name, text in (("notes.txt", "n"), ("README.md", "# mine"), ("sub/x.txt", "x")):
        (output / name).write_text(text)
    before = snapshot(output)
    result = prepare_cli(one_source(root, output), tmp_path, "user")
    assert result.returncode == 2
    assert "did not write" in one_error_line(result)
    assert snapshot(output) == before


def test_a_user_card_and_a_user_folder_survive_reruns(tmp_path, spark):
    root = fineweb_corpus(tmp_path / "corpus")
    output = tmp_path / "out"
    cards = tmp_path / "cards/one"
    cards.mkdir(parents=True)
    (cards / "README.md").write_text("# my own notes")
    config = make_config(**config_args(root, output))
    with pytest.raises(LongmixError, match="longmix did not write it"):
        prepare(config)  # refused before Spark runs: no output written
    assert not (output / "_report.json").exists()
    (cards / "README.md").rename(cards / "notes.md")
    prepare(config)
    assert (output / "README.md").read_text().count("written by longmix") == 1
    directory = next(p.parent for p in output.glob("*/index.json"))
    user = directory / "b00099-a0"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    reseeded = make_config(**config_args(root, output, seed=2))
    prepare(reseeded)  # another config: the stale shards are cleared, the user's folder kept
    assert (user / "keep.txt").read_text() == "mine"
    assert (cards / "notes.md").read_text() == "# my own notes"
    assert validate(str(output), StorageOptions()).ok


def config_args(root: Path, output: Path, seed: int = 1) -> dict:
    one = one_source(root, output)
    return {
        "sources": one["sources"],
        "output": output,
        "run": {"name": "one", "seed": seed, "cards": str(output.parent / "cards")},
        "packing": one["packing"],
        "mds": one["mds"],
    }


def test_two_runs_into_one_output_one_clear_refusal(tmp_path):
    root = fineweb_corpus(tmp_path / "corpus", files=4, rows=60)
    output = tmp_path / "out"
    config = one_source(root, output)
    first = subprocess.Popen(
        prepare_command(config, tmp_path, "first"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (output / LOCK).exists() and time.time() < deadline:
        time.sleep(0.05)
    second = prepare_cli(config, tmp_path, "second")
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 2
    assert "in use by another longmix run" in one_error_line(second)
    assert f"pid {first.pid}" in second.stderr
    assert validate(str(output), StorageOptions()).ok
    assert not (output / LOCK).exists()


def test_a_stale_local_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    lock = tmp_path / LOCK
    lock.write_text('{"pid": 1, "host": "gone"}')
    old = time.time() - 120
    os.utime(lock, (old, old))
    with run_lock(str(tmp_path), StorageOptions(), stale_seconds=60):
        assert LocalLock(str(tmp_path), 60).read()[0]["pid"] == os.getpid()
        with pytest.raises(LongmixError, match=f"pid {os.getpid()}"):
            LocalLock(str(tmp_path), 60).acquire()
    assert not lock.exists()


def test_the_lock_of_a_killed_run_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "token": "old"}
    (tmp_path / LOCK).write_text(json.dumps(holder))  # fresh: its heartbeat is recent
    with run_lock(str(tmp_path), StorageOptions()):
        assert LocalLock(str(tmp_path), 60).read()[0]["pid"] == os.getpid()


def test_the_s3_lock_is_a_conditional_lease(s3_client, s3_endpoint):
    s3_client.create_bucket(Bucket="locks")
    storage = StorageOptions(s3_endpoint)
    holder = S3Lock("s3://locks/out", storage, stale_seconds=60)
    holder.acquire()
    with pytest.raises(LongmixError, match="in use by another longmix run"):
        S3Lock("s3://locks/out", storage, stale_seconds=60).acquire()
    holder.beat()
    taker = S3Lock("s3://locks/out", storage, stale_seconds=-1)  # every lock looks stale
    taker.acquire()
    holder.release()  # no longer the holder: the taker's lock stays
    assert s3_client.head_object(Bucket="locks", Key=f"out/{LOCK}")["ETag"] == taker.etag
    taker.release()
    assert "Contents" not in s3_client.list_objects_v2(Bucket="locks", Prefix=f"out/{LOCK}")


def test_a_marked_output_is_reused(tmp_path, spark):
    root = fineweb_corpus(tmp_path / "corpus")
    output = tmp_path / "out"
    prepare(make_config(**config_args(root, output)))
    assert (output / MARKER).exists()
    again = prepare(make_config(**config_args(root, output)))
    assert again.data["already_complete"]

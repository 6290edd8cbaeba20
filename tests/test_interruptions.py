"""A run stopped by Ctrl-C, SIGTERM, a full disk or S3 faults says so in one line, and the
same command then resumes to shards byte-identical to an uninterrupted run (`reference`)."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from longmix.pipeline.validate import validate
from longmix.stages.logic.storage import StorageOptions
from tests.conftest import download_tree, prepare_cli, prepare_command, start_and_wait_for
from tests.fault_proxy import FaultPlan, FaultProxy
from tests.test_mds import cli_config, fingerprint, shard_hashes, stray_folders
from tests.test_ownership import one_error_line


def stop_once_committing(config: dict, folder: Path, signum: int) -> subprocess.CompletedProcess:
    """Start the run and send `signum` to its process group (as a terminal's Ctrl-C does)
    once the first unit is committed (its task then waits, so the run is stopped half-way)."""
    held = folder / "held"
    process = start_and_wait_for(
        held,
        prepare_command({**config, "faults": {"hold_after_commit": str(held)}}, folder, "stopped"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_resumes_to_reference(config: dict, folder: Path, reference: Path) -> None:
    resumed = prepare_cli(config, folder, "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_output(Path(config["run"]["output"]), reference)


def assert_same_output(output: Path, reference: Path) -> None:
    """Byte-identical shards (their sha1 in index.json, checked against the files by
    validate), the same samples in the same order, no stray attempt folder."""
    assert shard_hashes(output) == shard_hashes(reference)
    assert fingerprint(output) == fingerprint(reference)
    assert stray_folders(output) == []
    assert validate(str(output), StorageOptions()).ok


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_stops_with_one_line_and_the_rerun_resumes(
    tmp_path, mixed_corpus, reference, signum, code, word
):
    config = cli_config(mixed_corpus, tmp_path / "out", mds={"shard_size": 16384, "partitions": 1})
    stopped = stop_once_committing(config, tmp_path, signum)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    assert word in one_error_line(stopped)
    assert_resumes_to_reference(config, tmp_path, reference)


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KB file system (tmpfs, so root only), grown to 256 MB by `grow()`."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode()[:200]}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_the_rerun_resumes(
    tmp_path, mixed_corpus, reference, small_disk
):
    mount, grow = small_disk
    config = cli_config(mixed_corpus, mount / "out")
    config["run"]["scratch"] = str(tmp_path / "scratch")
    full = prepare_cli(config, tmp_path, "full")
    assert full.returncode != 0
    line = one_error_line(full)
    assert "No space left on device" in line or "disk full" in line, line
    grow()
    assert_resumes_to_reference(config, tmp_path, reference)


def s3_output(s3_client, bucket: str, corpus: Path, folder: Path) -> dict:
    """The reference job with its output at s3://BUCKET/run."""
    s3_client.create_bucket(Bucket=bucket)
    config = cli_config(corpus, folder / "out")
    config["run"].update(output=f"s3://{bucket}/run", scratch=str(folder / "scratch"))
    return config


def shard_upload(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith(".mds")


@pytest.mark.slow
def test_s3_faults_in_the_mds_upload_are_retried(
    tmp_path, mixed_corpus, reference, s3_endpoint, s3_client
):
    config = s3_output(s3_client, "faults", mixed_corpus, tmp_path)
    plan = FaultPlan(shard_upload, resets={2, 9}, slowdowns={4, 5, 12}, outage_at=15)
    with FaultProxy(s3_endpoint, plan) as proxy:
        result = prepare_cli(config, tmp_path, "faulty", {"AWS_ENDPOINT_URL": proxy.url})
    assert result.returncode == 0, result.stderr[-3000:]
    assert plan.injected["outage"] == 1 and plan.injected["slowdown"] == 3
    assert plan.injected["reset"] > 2  # the outage's too
    assert_same_output(download_tree(s3_client, "faults", "run", tmp_path / "s3"), reference)


@pytest.mark.slow
def test_an_s3_upload_that_keeps_failing_stops_and_the_rerun_resumes(
    tmp_path, mixed_corpus, reference, s3_endpoint, s3_client
):
    config = s3_output(s3_client, "failing", mixed_corpus, tmp_path)
    plan = FaultPlan(shard_upload, resets=set(range(6, 40)))
    with FaultProxy(s3_endpoint, plan) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"}
        failed = prepare_cli(config, tmp_path, "failing", env)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "cannot write s3://failing/run/" in one_error_line(failed)
    resumed = prepare_cli(config, tmp_path, "resumed", {"AWS_ENDPOINT_URL": s3_endpoint})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_output(download_tree(s3_client, "failing", "run", tmp_path / "s3"), reference)

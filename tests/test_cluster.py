"""The demo job under spark-submit on a Spark standalone cluster (a master and two 1-core
workers, each its own JVM, executors in their own processes), shipped as `make dist` builds
it: the same samples as the embedded run, also when a worker dies in the middle of the job."""

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from longmix.pipeline.presets import config_path
from longmix.pipeline.validate import validate
from longmix.stages.logic.storage import StorageOptions
from tests.conftest import free_port
from tests.standalone import spark_env, start_cluster, submit_command
from tests.test_mds import fingerprint, stray_folders

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`make dist`, into a folder of the test's own."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(["make", "-s", "-C", str(ROOT), "dist", f"DIST={dist}"], check=True)
    return next(dist.glob("longmix-*.whl"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = start_cluster(tmp_path_factory.mktemp("cluster"), [free_port() for _ in range(4)])
    yield started
    started.stop()


def submit(cluster, wheel: Path, workdir: Path, output: str) -> subprocess.Popen:
    """The demo config, pointed at the demo's corpus, submitted to the cluster."""
    config = yaml.safe_load(config_path("demo").read_text())
    config["run"].update(workdir=str(workdir), output=output, cards=str(workdir / "cards"))
    path = workdir / f"{output}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(workdir / f"{output}.log", "w")  # noqa: SIM115 - the process keeps it
    command = submit_command(cluster, wheel, ROOT / "pipeline/main.py", str(path))
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=spark_env(), cwd=workdir
    )


def finished(process: subprocess.Popen, workdir: Path, output: str) -> str:
    assert process.wait(timeout=900) == 0, (workdir / f"{output}.log").read_text()[-4000:]
    return (workdir / f"{output}.log").read_text()


def test_spark_submit_matches_the_embedded_run(demo_run, cluster, wheel):
    workdir, _ = demo_run
    finished(submit(cluster, wheel, workdir, "cluster-output"), workdir, "cluster-output")
    assert fingerprint(workdir / "cluster-output") == fingerprint(workdir / "output")
    # Both workers ran executors for the application (in their own work folders).
    for number in range(2):
        assert list((cluster.folder / f"work{number}").glob("app-*/*/stderr")), number


def test_a_worker_killed_mid_job_leaves_every_sample_exactly_once(demo_run, cluster, wheel):
    workdir, _ = demo_run
    output = workdir / "killed-output"
    process = submit(cluster, wheel, workdir, "killed-output")
    deadline = time.monotonic() + 600
    while not list((output / "_commits").glob("*/*.json")):
        assert process.poll() is None, "the job ended before any unit was committed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cluster.kill_worker(1)
    log = finished(process, workdir, "killed-output")
    assert "Lost executor" in log or "worker lost" in log.lower()
    assert cluster.alive_workers() == 1
    assert fingerprint(output) == fingerprint(workdir / "output")
    assert validate(str(output), StorageOptions()).ok
    assert not stray_folders(output)

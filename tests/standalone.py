"""A Spark standalone cluster on 127.0.0.1 made of the installed pyspark's own master and
worker JVMs (one core each), for tests that submit jobs with spark-submit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent


def spark_env() -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_NO_DAEMONIZE": "1",
    }


@dataclass
class Cluster:
    folder: Path
    port: int
    webui: int
    master: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui}/json/", timeout=5) as r:
                return int(json.load(r)["aliveworkers"])
        except (OSError, ValueError):  # not up yet, or a starting UI's empty answer
            return 0

    def kill_worker(self, number: int) -> None:
        """SIGKILL a worker with everything it started (its executor and Python workers), as
        when a machine dies."""
        os.killpg(self.workers[number].pid, signal.SIGKILL)
        self.workers[number].wait()

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def launch(folder: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(
        [str(SPARK_HOME / "bin/spark-class"), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=spark_env(),
        start_new_session=True,  # its own process group: killpg takes its children too
    )


def start_cluster(
    folder: Path, ports: list[int], workers: int = 2, timeout: float = 120
) -> Cluster:
    """`ports`: master, master web UI, then one web UI port per worker."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder, ports[0], ports[1])
    try:
        cluster.master = launch(
            folder,
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(cluster.port)),
            *("--webui-port", str(cluster.webui)),
        )
        for number in range(workers):
            cluster.workers.append(
                launch(
                    folder,
                    f"worker{number}",
                    "org.apache.spark.deploy.worker.Worker",
                    cluster.url,
                    *("--host", "127.0.0.1", "--cores", "1", "--memory", "3g"),
                    *("--webui-port", str(ports[2 + number])),
                    *("--work-dir", str(folder / f"work{number}")),
                )
            )
        deadline = time.monotonic() + timeout
        while cluster.alive_workers() < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not register; logs in {folder}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def submit_command(cluster: Cluster, py_files: Path, script: Path, *args: str) -> list[str]:
    """spark-submit as the README shows it, with executors on this machine's Python."""
    return [
        str(SPARK_HOME / "bin/spark-submit"),
        *("--master", cluster.url),
        *("--py-files", str(py_files)),
        *("--conf", f"spark.pyspark.python={sys.executable}"),
        *("--conf", "spark.executor.memory=1536m"),
        str(script),
        *args,
    ]

"""docker/: the job image's Dockerfile (read with a real Dockerfile parser), its entrypoint,
and the compose cluster. The image installs with scripts/install.sh, the script `make test`
runs, so every CI run exercises the image's install path."""

import os
import subprocess
from pathlib import Path

import pyspark
import yaml
from dockerfile_parse import DockerfileParser

from longmix.pipeline.cli import parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def instructions(name: str) -> list[str]:
    found = DockerfileParser(str(DOCKER / "Dockerfile")).structure
    return [i["value"] for i in found if i["instruction"] == name]


def test_the_dockerfile_builds_from_the_repository_with_the_install_script():
    dockerfile = DockerfileParser(str(DOCKER / "Dockerfile"))
    assert dockerfile.baseimage.startswith("python:3.11")
    assert any("openjdk-17-jre-headless" in run and "tini" in run for run in instructions("RUN"))
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    venv = "/opt/longmix/venv"
    assert f"scripts/install.sh {venv}" in instructions("RUN")
    env = dockerfile.envs
    assert env["SPARK_HOME"] == f"{venv}/lib/python3.11/site-packages/pyspark"
    assert env["PYSPARK_PYTHON"] == f"{venv}/bin/python"
    assert instructions("ENTRYPOINT") == ['["/opt/entrypoint.sh"]']
    assert "docker/entrypoint.sh /opt/entrypoint.sh" in instructions("COPY")
    assert instructions("USER") == ["185"]


def test_make_installs_with_the_same_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/install.sh $(VENV) train,test --editable" in makefile


def test_the_entrypoint_runs_commands_and_the_kubernetes_driver():
    entrypoint = str(DOCKER / "entrypoint.sh")
    assert subprocess.run(["bash", "-n", entrypoint]).returncode == 0
    echoed = subprocess.run([entrypoint, "echo", "as given"], capture_output=True, text=True)
    assert echoed.stdout == "as given\n"
    env = {
        **os.environ,
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1",
    }
    driver = subprocess.run(
        [entrypoint, "driver", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert driver.returncode == 0, driver.stderr[-2000:]
    assert pyspark.__version__ in driver.stdout + driver.stderr


def test_the_compose_cluster_runs_the_demo_on_the_image():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"s3", "bucket", "master", "worker-1", "worker-2", "demo"} <= set(services)
    for name in ("master", "worker-1", "worker-2", "demo"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert services[name]["environment"]["AWS_ENDPOINT_URL"] == "http://s3:9000"
    assert services["master"]["command"][:2] == [
        "spark-class",
        "org.apache.spark.deploy.master.Master",
    ]
    for worker in ("worker-1", "worker-2"):
        command = services[worker]["command"]
        assert command[1:3] == ["org.apache.spark.deploy.worker.Worker", "spark://master:7077"]
    command = services["demo"]["command"]
    assert command[0] == "longmix"
    args = parser().parse_args(command[1:])
    assert args.command == "demo" and args.master == "spark://master:7077"
    assert "run.output=s3://longmix/demo" in args.overrides

"""Environment checks and the engine/logic boundary."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import longmix.stages.logic

REPO = Path(__file__).resolve().parent.parent


def path_without_java(tmp_path: Path) -> str:
    """A PATH holding only what `make` and the CLI need, and no `java`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    return str(bin_dir)


def no_java_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = path_without_java(tmp_path)
    return env


def test_make_demo_without_java_prints_one_clear_line(tmp_path):
    result = subprocess.run(
        ["make", "-s", "demo", "PYTHON=python3"],
        cwd=REPO,
        env=no_java_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("longmix: error:")]
    assert len(lines) == 1 and "Java 17+" in lines[0] and "apt-get install" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_without_java_prints_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "longmix", "demo", "--workdir", str(tmp_path / "d")],
        env=no_java_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("longmix: error: Spark needs Java 17+")
    assert "Traceback" not in result.stderr


def test_per_partition_logic_never_imports_pyspark():
    modules = sorted(
        f"longmix.stages.logic.{p.stem}"
        for p in Path(longmix.stages.logic.__file__).parent.glob("*.py")
        if p.stem != "__init__"
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "assert not any(m.startswith('pyspark') for m in sys.modules), 'pyspark imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert len(modules) >= 6


def test_stages_never_create_sessions():
    for path in (REPO / "stages").rglob("*.py"):
        text = path.read_text()
        assert "builder" not in text and "getOrCreate" not in text, path


def test_the_driver_jvm_maps_the_class_archive_once_it_exists(tmp_path, monkeypatch):
    from longmix.pipeline.jvm_classes import archive_path
    from longmix.pipeline.spark import with_class_archive

    monkeypatch.setenv("LONGMIX_CACHE", str(tmp_path))
    settings = {"spark.driver.extraJavaOptions": "-Dkept=1"}
    assert with_class_archive(settings) == settings  # none yet: started as before
    archive = archive_path()
    assert archive is not None and archive.is_relative_to(tmp_path)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"classes")
    options = with_class_archive(settings)["spark.driver.extraJavaOptions"]
    assert options.startswith(f"-XX:SharedArchiveFile={archive} ")
    assert options.endswith(" -Dkept=1")


def test_a_small_embedded_run_compiles_with_c1_alone_unless_told_otherwise():
    from longmix.pipeline.config import SparkConfig
    from longmix.pipeline.spark import QUICK_JIT_INPUT_BYTES, quick_jit

    assert quick_jit(SparkConfig(), 40 * 1024**2)
    assert not quick_jit(SparkConfig(), QUICK_JIT_INPUT_BYTES + 1)
    assert not quick_jit(SparkConfig(), None)  # a session built for anything but a run
    told = SparkConfig(conf={"spark.driver.extraJavaOptions": "-Xss4m"})
    assert not quick_jit(told, 1)


def test_the_embedded_jvm_starts_with_the_compiler_its_input_size_asks_for():
    script = (
        "from longmix.pipeline.config import SparkConfig\n"
        "from longmix.pipeline.spark import build_session\n"
        "spark = build_session(SparkConfig(master='local[1]', conf={'spark.ui.enabled': False}),"
        " input_bytes=1000)\n"
        "bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()\n"
        "print(list(bean.getInputArguments()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    arguments = result.stdout.strip().splitlines()[-1]
    assert "-XX:TieredStopAtLevel=1" in arguments
    assert "GCLockerRetryAllocationCount=100" in arguments  # longmix's other options kept

"""The embedded driver JVM's classes, archived once and mapped at every later start (dynamic
AppCDS, Java 13+).

Starting Spark's driver JVM and its first job spends most of their time loading and verifying
the same classes on every run: measured on 2 cores, a whole 30 MB `prepare` 43 s -> 34 s
(session start 12.4 s -> 7.7 s, the first job 5.6 s -> 3.1 s). Writing the archive takes
about a minute once, so runs never write it: `scripts/install.sh` (so `make demo` and `make test`)
does, with `python -m longmix.pipeline.spark`, into the user's cache folder, keyed by the Java
runtime and the Spark installation. A JVM that cannot use the archive starts as it would
without one. Not used under spark-submit, which starts the JVM itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from longmix.pipeline.java import java_executable

CACHE_VARIABLE = "LONGMIX_CACHE"
# The JVM's unified logging would print a line per class it cannot archive (signed jars).
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path() -> Path | None:
    """Where this Java and Spark's archive lives, or None without a Java to key it by."""
    import pyspark

    java = java_executable()
    if java is None:
        return None
    real = os.path.realpath(java)
    stat = os.stat(real)
    key = f"{real} {stat.st_size} {stat.st_mtime_ns} {pyspark.__file__} {pyspark.__version__}"
    cache = Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "longmix")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / "jvm" / f"spark-{pyspark.__version__}-{digest}.jsa"


def java_options(archive: Path) -> str | None:
    """The driver JVM's options that map the archive, if there is one."""
    if archive.is_file() and archive.stat().st_size > 0:
        return f"-XX:SharedArchiveFile={archive} {QUIET}"
    return None


def adopt(dump: Path, archive: Path, worked: bool) -> None:
    """Stop the JVM, wait for it to write its classes, and publish the archive whole (a
    rename) if its work went through, or drop what it left."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):
        SparkContext._active_spark_context.stop()
    if process is not None:
        with contextlib.suppress(Exception):
            gateway.shutdown()
            process.stdin.close()  # the gateway JVM exits when its stdin closes
            process.wait(timeout=600)
    if worked and process is not None and process.returncode == 0 and dump.is_file():
        os.replace(dump, archive)
    else:
        dump.unlink(missing_ok=True)

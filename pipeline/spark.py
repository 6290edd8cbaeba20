"""The one place a SparkSession is built: embedded `local[*]` by default, or whatever master
`spark-submit`, the CLI or the config names."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from longmix.pipeline.config import SparkConfig
from longmix.pipeline.java import java_problem
from longmix.pipeline.jvm_classes import QUIET, adopt, archive_path, java_options
from longmix.stages.logic.errors import LongmixError, task_message

JAVA_GC_OPTIONS = (
    "-XX:+IgnoreUnrecognizedVMOptions -XX:+UnlockDiagnosticVMOptions "
    "-XX:GCLockerRetryAllocationCount=100"
)
DEFAULTS: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Text rows can be tens of MB (a repository part): large Arrow types and byte-bounded
    # batches keep a batch from overflowing 2 GB offsets or a worker's memory.
    "spark.sql.execution.arrow.useLargeVarTypes": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "1024",
    "spark.sql.execution.arrow.maxBytesPerBatch": str(16 * 1024 * 1024),
    # longmix shows progress in files, bytes, documents and tokens (`pipeline.progress`).
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
    # Spark reads only longmix's own parquet (documents, packed sequences), whose rows are
    # large: the vectorized reader would fill 4096-row batches (a 64K-token sequence is
    # 256 KB, so 1 GB a batch) and run out of heap; the row reader holds one row.
    "spark.sql.parquet.enableVectorizedReader": "false",
    # JDK 17 fails a large allocation with OutOfMemoryError after two waits for threads in
    # JNI critical sections (zstd compressing parquet pages) however much heap is free: seen
    # allocating a 33 MB document at `run.until: documents`. Ignored by JDKs without the flag.
    "spark.driver.extraJavaOptions": JAVA_GC_OPTIONS,
    "spark.executor.extraJavaOptions": JAVA_GC_OPTIONS,
}


# In embedded mode executors share the user's console: a failed task would print its Python
# traceback there before the driver turns the failure into one readable line.
EMBEDDED_QUIET_LOGGERS = [
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.storage.BlockManager",
    # A task that fails while Spark writes its output (the packing pass) is logged again by
    # the writer, its Python traceback included.
    "org.apache.spark.util.Utils",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",
    "org.apache.spark.sql.execution.datasources.FileFormatDataWriter",
    "org.apache.hadoop.mapreduce.lib.output.FileOutputCommitter",
    # Warns with a dump of every column's buffers when a row group of large documents
    # allocated more than three times its size: the sizes are bounded (driver.py), not a fault.
    "org.apache.parquet.hadoop.InternalParquetRecordWriter",
]


def spark_started() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def silence_spark() -> None:
    """After an interrupt the process exits at once: its JVM (which ignores Ctrl-C) would
    otherwise log every task it loses while it shuts down."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is not None:
        with contextlib.suppress(Exception):
            context.setLogLevel("OFF")


def under_spark_submit() -> bool:
    """spark-submit starts the JVM itself and hands PySpark its gateway."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


# The embedded JVM compiles with C1 alone (no C2) for inputs up to this many bytes of files:
# C2's compiler threads take cores from the run's own work, and a run this size ends before
# C2's faster code pays back (measured on 2 cores, whole `prepare` runs: 40 MB of text
# 16.5 -> 12.6 s, 160 MB 22.6 -> 17.1 s, 640 MB 43.6 -> 33.0 s). Larger runs keep the
# default tiered compilation; spark-submit and a caller's session choose their own.
QUICK_JIT_INPUT_BYTES = 2 * 1024**3
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def build_session(config: SparkConfig, master: str | None = None, input_bytes: int | None = None):
    """The session for `config` (`master` overrides its master). With `input_bytes` (an
    embedded run's input size) the driver JVM's compiler suits a run of that size."""
    problem = java_problem()
    if problem and not under_spark_submit():
        raise LongmixError(problem)
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if (master or config.master).startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(config.app_name)
    if not under_spark_submit():
        builder = builder.master(master or config.master)
    settings = {**DEFAULTS, **{k: str(v) for k, v in config.conf.items()}}
    if quick_jit(config, input_bytes) and not under_spark_submit() and not spark_started():
        key = "spark.driver.extraJavaOptions"
        settings[key] = f"{settings[key]} {QUICK_JIT}"
    if config.class_cache and not under_spark_submit() and not spark_started():
        settings = with_class_archive(settings)
    for key, value in settings.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else value)
    on_main_thread = threading.current_thread() is threading.main_thread()
    ctrl_c = signal.getsignal(signal.SIGINT) if on_main_thread else None
    with startup_noise_dropped():
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.log_level)
    if on_main_thread:
        # PySpark's own Ctrl-C handler calls into the JVM from inside the interrupted JVM
        # call, and py4j logs tracebacks of both; the caller's handler unwinds cleanly.
        signal.signal(signal.SIGINT, ctrl_c)
    if session.sparkContext.master.startswith("local"):
        quiet_task_failures(session)
    return session


def quick_jit(config: SparkConfig, input_bytes: int | None) -> bool:
    """C1 alone for a small embedded run whose driver options the user left to longmix."""
    return (
        input_bytes is not None
        and input_bytes <= QUICK_JIT_INPUT_BYTES
        and "spark.driver.extraJavaOptions" not in config.conf
    )


class SessionStarting:
    """A SparkSession built on a thread of its own from now on, so that the JVM starts while
    the driver checks the config and its inputs; `get()` waits for it. Leaving the `with`
    block by an error waits for the start to end, so that the error's line is not lost in
    the JVM's stderr filter and no half-started JVM is left behind."""

    def __init__(self, config: SparkConfig, master: str | None, input_bytes: int | None = None):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="longmix-spark-start")
        self.future = self.pool.submit(build_session, config, master, input_bytes)
        self.pool.shutdown(wait=False)

    def get(self):
        return self.future.result()

    def __enter__(self) -> SessionStarting:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            futures.wait([self.future])


@contextlib.contextmanager
def caller_session_settings(session) -> Iterator[None]:
    """A caller's session (`longmix.prepare(spark=...)`), or None: given longmix's SQL
    settings for the run and handed back with its own."""
    if session is None:
        yield
        return
    settings = {k: v for k, v in DEFAULTS.items() if k.startswith("spark.sql.")}
    before = {key: session.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        session.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)


def refuse_workers_without_longmix(session) -> None:
    """One tiny task on the session: its Python worker must import longmix's stages."""

    def probe(_: int) -> str:  # nested, so Spark ships it by value, not as a longmix import
        import importlib

        try:
            importlib.import_module("longmix.stages.tasks")
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    try:
        problem = session.sparkContext.parallelize([0], 1).map(probe).first()
    except Exception as exc:  # the worker could not start, or not unpickle the probe
        errors = [line.strip() for line in str(exc).splitlines() if "Error:" in line]
        problem = errors[-1] if errors else str(exc).strip().splitlines()[0]
    if problem:
        raise LongmixError(
            f"the Spark session's Python workers cannot import longmix ({problem}): build "
            f"the session with PYSPARK_PYTHON set to a Python where longmix is installed (here: "
            f"os.environ['PYSPARK_PYTHON'] = {sys.executable!r} before getOrCreate(); "
            "spark.pyspark.python under spark-submit), or ship longmix's wheel with "
            "spark.submit.pyFiles"
        )


# What the JVM prints at every start that tells a user nothing (kept with `--verbose`, which
# sets LONGMIX_VERBOSE): Java's incubator-module notice, log4j's default-profile lines and
# Hadoop's missing native library.
STARTUP_NOISE = re.compile(
    rb"(WARNING: Using incubator modules|Using Spark's default log4j profile|Setting default "
    rb"log level to|To adjust logging level use sc.setLogLevel|\S+ \S+ WARN NativeCodeLoader:)"
)
# A partial line that may still become a noise line (or a log line) is held until its end;
# anything else (Spark's progress bar, which ends in a carriage return) passes at once.
MAY_BE_NOISE = re.compile(rb"(WARNING|Using|Setting|To adjust|\d\d/)")


@contextlib.contextmanager
def startup_noise_dropped() -> Iterator[None]:
    """A JVM started inside the block writes its stderr through a pipe that drops the
    start-up noise and forwards everything else, for the JVM's whole life."""
    if os.environ.get("LONGMIX_VERBOSE") or spark_started() or under_spark_submit():
        yield
        return
    real = os.dup(2)
    read_end, write_end = os.pipe()
    threading.Thread(
        target=forward_stderr, args=(read_end, real), name="longmix-jvm-stderr", daemon=True
    ).start()
    os.dup2(write_end, 2)  # inherited by the JVM the block starts
    os.close(write_end)
    try:
        yield
    finally:
        os.dup2(real, 2)  # this process's own stderr as before; the JVM keeps the pipe


def forward_stderr(read_end: int, out: int) -> None:
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as source, os.fdopen(out, "wb", 0) as target:
        while chunk := source.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line + b"\n" for line in lines if not STARTUP_NOISE.match(line)]
            if pending and not MAY_BE_NOISE.match(pending):
                kept.append(pending)
                pending = b""
            if kept:
                target.write(b"".join(kept))
        if pending:
            target.write(pending)


def with_class_archive(settings: dict[str, str]) -> dict[str, str]:
    """The driver JVM started with the archive of its classes (`jvm_classes`), if built."""
    archive = archive_path()
    options = java_options(archive) if archive is not None else None
    if options is None:
        return settings
    key = "spark.driver.extraJavaOptions"
    return {**settings, key: f"{options} {settings.get(key, '')}".strip()}


def quiet_task_failures(session) -> None:
    jvm = session.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    for name in EMBEDDED_QUIET_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)


@contextlib.contextmanager
def task_failures_as_errors() -> Iterator[None]:
    """A failed Spark job raised as the one line it means for the user, where it can be
    stated: a TaskError's line (found by its marker in the text Spark hands over) or a full
    disk; anything else as it came."""
    try:
        yield
    except LongmixError:
        raise
    except Exception as exc:
        text = str(exc)
        message = task_message(text)
        if message is None and "No space left on device" in text:
            message = "disk full (no space left on device) while Spark tasks wrote data"
        if message is None:
            raise
        raise LongmixError(message) from None


def write_class_archive() -> Path | None:
    """Run the kinds of work a `prepare` runs (Arrow Python tasks, a shuffle, parquet written
    and read, a collect) in a JVM that archives its classes as it exits."""
    archive = archive_path()
    if archive is None or java_problem():
        return None
    archive.parent.mkdir(parents=True, exist_ok=True)
    dump = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    conf = {
        "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={dump} {QUIET}",
        "spark.ui.showConsoleProgress": "false",
    }
    spark = build_session(SparkConfig(master="local[2]", conf=conf, class_cache=False))
    worked = False
    try:
        with tempfile.TemporaryDirectory(prefix="longmix-classes-") as folder:
            rows = spark.range(10_000).selectExpr("id", "id % 7 AS bucket", "xxhash64(id) AS h")
            shuffled = rows.repartition(2, "bucket").sortWithinPartitions("bucket", "h")
            arrow = shuffled.mapInArrow(lambda batches: batches, shuffled.schema)
            arrow.write.mode("overwrite").partitionBy("bucket").parquet(f"{folder}/out")
            spark.read.parquet(f"{folder}/out").where("bucket = 3").collect()
        worked = True
    finally:
        adopt(dump, archive, worked)
    return archive if archive.is_file() else None


if __name__ == "__main__":
    written = write_class_archive()
    print(f"JVM class archive: {written or 'not written (no suitable Java)'}")

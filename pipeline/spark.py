"""The one place a SparkSession is built: embedded `local[*]` by default, or whatever master
`spark-submit`, the CLI or the config names."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from pipeline.config import SparkConfig
from pipeline.errors import LongmixError
from pipeline.java import java_problem
from pipeline.jvm_classes import archive_path, java_options

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
    "spark.ui.showConsoleProgress": "true",
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
    # allocated more than three times its size: the sizes are bounded (main.py), not a fault.
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


def build_session(config: SparkConfig, master: str | None = None):
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
    if config.class_cache and not under_spark_submit() and not spark_started():
        settings = with_class_archive(settings)
    for key, value in settings.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else value)
    on_main_thread = threading.current_thread() is threading.main_thread()
    ctrl_c = signal.getsignal(signal.SIGINT) if on_main_thread else None
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.log_level)
    if on_main_thread:
        # PySpark's own Ctrl-C handler calls into the JVM from inside the interrupted JVM
        # call, and py4j logs tracebacks of both; the caller's handler unwinds cleanly.
        signal.signal(signal.SIGINT, ctrl_c)
    if session.sparkContext.master.startswith("local"):
        quiet_task_failures(session)
    return session


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

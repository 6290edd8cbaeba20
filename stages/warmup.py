"""Warm Python workers: a job that starts each executor's Python workers and readies what
the stages' tasks load first (their modules, the tokenizer), run while the driver plans.

Spark reuses a Python worker for later tasks (`spark.python.worker.reuse`, on by default),
and `load_tokenizer` caches per process, so the first read and packing tasks find both ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

import pyarrow as pa
from pyspark.sql import SparkSession

from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer

WARMUP_JOB = "longmix: start the Python workers"


def warm_task(
    batches: Iterable[pa.RecordBatch], tokenizer: TokenizerSpec | None
) -> Iterator[pa.RecordBatch]:
    """Imports the stages' task modules and loads the tokenizer; yields nothing."""
    import longmix.stages.logic.read
    import longmix.stages.logic.sequences  # noqa: F401

    for _ in batches:
        pass
    if tokenizer is not None:
        load_tokenizer(tokenizer)
    return iter(())


def warm_workers(spark: SparkSession, tokenizer: TokenizerSpec | None) -> None:
    """One task per core of the session, each on a Python worker of its own."""
    context = spark.sparkContext
    slots = context.defaultParallelism
    body = partial(warm_task, tokenizer=tokenizer)
    context.setJobDescription(WARMUP_JOB)  # this thread's jobs only
    spark.range(slots, numPartitions=slots).mapInArrow(body, "id long").collect()

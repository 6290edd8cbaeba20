"""Read stage: the file list is distributed and each Spark task reads its own bin of files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import partial

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.faults import NO_FAULTS, Faults
from longmix.stages.logic.fingerprints import Fingerprints
from longmix.stages.logic.read import ReadTask, encode_bin, plan_bins, read_partition
from longmix.stages.logic.schemas import READ_SCHEMA
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.storage import StorageOptions


def read_task(batches: Iterable[pa.RecordBatch], shared, fingerprints: Fingerprints, **kwargs):
    """The evaluation n-grams come from the executor's copy of the broadcast."""
    if shared is not None:
        fingerprints = replace(fingerprints, index=shared.value)
    yield from read_partition(batches, fingerprints=fingerprints, **kwargs)


def read_sources(
    spark: SparkSession,
    tasks: list[ReadTask],
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    target_bytes: int,
    fingerprints: Fingerprints,
    faults: Faults = NO_FAULTS,
) -> DataFrame:
    """Documents and skipped records (READ_SCHEMA) of every file in `tasks`. The evaluation
    n-grams are broadcast: shipped to each executor once, not with every task."""
    bins = plan_bins(tasks, target_bytes, min_bins=spark.sparkContext.defaultParallelism)
    rows = [(index, encode_bin(b)) for index, b in enumerate(bins)]
    plan = spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), "bin int, files string"
    )
    index = fingerprints.index
    shared = None if index is None else spark.sparkContext.broadcast(index)
    body = partial(
        read_task,
        shared=shared,
        fingerprints=replace(fingerprints, index=None),
        specs=specs,
        storage=storage,
        strict=strict,
        faults=faults,
    )
    return plan.mapInArrow(body, from_arrow_schema(READ_SCHEMA))

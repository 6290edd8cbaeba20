"""Read stage: the file list is distributed and each Spark task reads its own bin of files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import partial

import pyarrow as pa
from pyspark.accumulators import Accumulator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.faults import NO_FAULTS, Faults
from longmix.stages.logic.fingerprints import Fingerprints
from longmix.stages.logic.read import (
    ReadTask,
    decode_bin,
    encode_bin,
    plan_bins,
    read_partition,
)
from longmix.stages.logic.schemas import READ_SCHEMA
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.storage import StorageOptions
from longmix.stages.progress import Progress


def read_task(
    batches: Iterable[pa.RecordBatch],
    shared,
    fingerprints: Fingerprints,
    done: Accumulator | None = None,
    **kwargs,
):
    """The evaluation n-grams come from the executor's copy of the broadcast; files, bytes
    and documents read go to `done` (progress) when the task ends."""
    if shared is not None:
        fingerprints = replace(fingerprints, index=shared.value)
    bins = list(batches)
    documents = 0
    for out in read_partition(bins, fingerprints=fingerprints, **kwargs):
        documents += out.column("skip_reason").null_count
        yield out
    if done is not None:
        files = [t for b in bins for j in b.column("files").to_pylist() for t in decode_bin(j)]
        done.add(
            {
                "read_tasks": 1,
                "files": sum(1 for t in files if not t.start),  # a file's first piece
                "bytes": sum(t.weight for t in files),
                "documents": documents,
            }
        )


def read_sources(
    spark: SparkSession,
    tasks: list[ReadTask],
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    target_bytes: int,
    fingerprints: Fingerprints,
    faults: Faults = NO_FAULTS,
    progress: Progress | None = None,
) -> DataFrame:
    """Documents and skipped records (READ_SCHEMA) of every file in `tasks`."""
    bins = plan_bins(tasks, target_bytes, min_bins=spark.sparkContext.defaultParallelism)
    body = partial(
        read_task,
        **read_arguments(spark, fingerprints, specs, storage, strict, faults, progress),
    )
    return bins_frame(spark, bins, progress).mapInArrow(body, from_arrow_schema(READ_SCHEMA))


def bins_frame(spark: SparkSession, bins: list[list[ReadTask]], progress: Progress | None):
    """One row per bin (`bin` int: its index, `files`: its files as JSON), one partition
    each, so each bin is one task."""
    if progress is not None:
        files = [t for b in bins for t in b]
        progress.planned.update(
            read_tasks=len(bins),
            files=len({t.uri for t in files}),
            bytes=sum(t.weight for t in files),
        )
    rows = [(index, encode_bin(b)) for index, b in enumerate(bins)]
    return spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), "bin int, files string"
    )


def read_arguments(
    spark: SparkSession,
    fingerprints: Fingerprints,
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    faults: Faults,
    progress: Progress | None,
) -> dict:
    """`read_task`'s arguments but the bins. The evaluation n-grams are broadcast: shipped to
    each executor once, not with every task."""
    index = fingerprints.index
    return {
        "shared": None if index is None else spark.sparkContext.broadcast(index),
        "fingerprints": replace(fingerprints, index=None),
        "specs": specs,
        "storage": storage,
        "strict": strict,
        "faults": faults,
        "done": None if progress is None else progress.done,
    }

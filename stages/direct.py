"""Direct pass: each task reads one bin of files and packs it, with no shuffle.

Used where no record needs to meet one from another file before packing (`specs.direct_pass`:
no source concatenates records, no exact duplicate is removed first). A bin is one bucket;
its records are packed in file order (files by URI, records as stored). The bins are fixed
by the input list (`specs.direct_bins`), so what a bucket holds, and so every sequence,
depends on the inputs and the seed alone, never on executors or partitions. The text stays in
the Python worker from reading to the MDS unit: it never crosses to the JVM.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.mds import MdsSpec
from longmix.stages.logic.read import ReadTask
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA
from longmix.stages.logic.sequences import SequencePlan, sequences_partition
from longmix.stages.progress import Progress, counting_writes
from longmix.stages.read import bins_frame, read_task
from longmix.stages.tasks import attempt_sink


def with_bucket(batches: Iterable[pa.RecordBatch], bucket: int) -> Iterator[pa.RecordBatch]:
    """READ_SCHEMA batches with a `bucket` column holding `bucket`."""
    for batch in batches:
        column = pa.array(np.full(batch.num_rows, bucket, dtype=np.int32))
        yield batch.append_column("bucket", column)


def bucketed_records(bins: Iterable[pa.RecordBatch], **read: object) -> Iterator[pa.RecordBatch]:
    """The records of every bin row (`bin`, `files`), each bin's with its index as bucket."""
    for batch in bins:
        for row in range(batch.num_rows):
            one = batch.slice(row, 1)
            yield from with_bucket(read_task([one], **read), one.column("bin")[0].as_py())


def direct_task(
    bins: Iterable[pa.RecordBatch],
    plan: SequencePlan,
    units: tuple[MdsSpec, dict] | None,
    **read: object,
) -> Iterator[pa.RecordBatch]:
    """The pass's body: read, tokenize and pack the task's bin (SEQUENCE_SCHEMA out);
    files, bytes and documents read, and sequences and tokens written, go to `done`."""
    out = sequences_partition(bucketed_records(bins, **read), plan, attempt_sink(units))
    yield from counting_writes(out, read.get("done"), "pack_tasks")


def direct_sequences(
    spark: SparkSession,
    bins: list[list[ReadTask]],
    plan: SequencePlan,
    read: dict[str, object],
    units: tuple[MdsSpec, dict] | None = None,
    progress: Progress | None = None,
) -> DataFrame:
    """SEQUENCE_SCHEMA rows as `sequences.build_sequences` gives them, one task per bin;
    `read` is `read.read_arguments`."""
    if progress is not None:
        progress.planned.update(pack_tasks=len(bins))
    body = partial(direct_task, plan=plan, units=units, **read)
    return bins_frame(spark, bins, progress).mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))

"""Sequences stage: read records to packed sequences through one shuffle.

Records are bucketed by a seeded hash of their group (a repository, a subject, or the record
itself) into a fixed number of buckets, and sorted by a seeded group order within each bucket:
what a bucket holds and in which order depends only on the seed and the data, never on the
number of partitions or executors, so neither do the sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

import pyarrow as pa
from pyspark.accumulators import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.concat import MEMBER_ORDER, unit, with_member_order
from longmix.stages.logic.mds import MdsSpec
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA
from longmix.stages.logic.sequences import INPUT_COLUMNS, SequencePlan, sequences_partition
from longmix.stages.partitioning import bucket_key
from longmix.stages.progress import Progress, counting_writes
from longmix.stages.tasks import attempt_sink


def sequences_task(
    batches: Iterable[pa.RecordBatch],
    plan: SequencePlan,
    units: tuple[MdsSpec, dict] | None,
    done: Accumulator | None = None,
) -> Iterator[pa.RecordBatch]:
    """The pass's body; the sequences and tokens it wrote go to `done` (progress)."""
    out = sequences_partition(batches, plan, attempt_sink(units))
    yield from counting_writes(out, done, "pack_tasks")


def build_sequences(
    records: DataFrame,
    plan: SequencePlan,
    buckets: int,
    partitions: int,
    units: tuple[MdsSpec, dict] | None = None,
    progress: Progress | None = None,
) -> DataFrame:
    """SEQUENCE_SCHEMA rows: sequences, each bucket's partial sequences, one tally per task.
    With `units` (the MDS spec and each (domain, length)'s directory) the sequences are
    written as MDS units by the task that packs them, and `commit` rows replace them."""
    seed = F.lit(plan.seed)
    ordered = (
        with_member_order(records, plan.seed)
        .withColumn("unit", unit())
        .withColumn(
            "bucket",
            F.pmod(F.xxhash64(seed, F.lit("bucket"), "source", "unit"), F.lit(buckets)).cast("int"),
        )
        .withColumn("order", F.xxhash64(seed, F.lit("order"), "source", "unit"))
        .repartition(partitions, bucket_key(F.col("bucket"), buckets, partitions))
        .sortWithinPartitions("bucket", "order", "source", "unit", *MEMBER_ORDER)
        .select(*INPUT_COLUMNS)
    )
    if progress is not None:
        progress.planned.update(pack_tasks=partitions)
    body = partial(
        sequences_task, plan=plan, units=units, done=None if progress is None else progress.done
    )
    return ordered.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))

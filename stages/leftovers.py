"""Leftover stage: the buckets' partial sequences packed together, so that a run loses at
most one partial sequence per (domain, length) however many buckets and partitions it has."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

import pyarrow as pa
from pyspark.accumulators import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.leftovers import leftover_partition
from longmix.stages.logic.mds import MdsSpec
from longmix.stages.logic.pack import PackSpec
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA, SpecKey
from longmix.stages.progress import Progress, counting_writes
from longmix.stages.tasks import attempt_sink


def leftover_task(
    batches: Iterable[pa.RecordBatch],
    units: tuple[MdsSpec, dict] | None,
    done: Accumulator | None = None,
    **settings,
) -> Iterator[pa.RecordBatch]:
    out = leftover_partition(batches, sink=attempt_sink(units), **settings)
    yield from counting_writes(out, done, "leftover_tasks")


def pack_leftovers(
    packed: DataFrame,
    specs: dict[SpecKey, PackSpec],
    buckets: int,
    thresholds: tuple[int, ...],
    units: tuple[MdsSpec, dict] | None = None,
    progress: Progress | None = None,
) -> DataFrame:
    """The buckets' partial sequences packed together per (domain, length), numbered as
    bucket `buckets` (after every real bucket); with `units`, written as MDS units."""
    partials = (
        packed.where(F.col("row_type") == "partial")
        .repartition(max(1, len(specs)), "domain", "seq_len")
        .sortWithinPartitions("domain", "seq_len", "bucket")
    )
    body = partial(
        leftover_task,
        units=units,
        done=None if progress is None else progress.done,
        specs=specs,
        bucket=buckets,
        thresholds=thresholds,
    )
    return partials.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))

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
from longmix.stages.logic.mds import MdsSpec, UnitSink
from longmix.stages.logic.pack import PackSpec
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA, SpecKey
from longmix.stages.progress import Progress, counting_writes
from longmix.stages.tasks import attempt_sink

# Partial sequences packed on the driver up to this many bytes of tokens (int32 ids and int8
# masks); past it, by Spark tasks. A partial is shorter than its sequence length, and each
# bucket leaves at most one per (domain, length), so the bound is known before the pass.
DRIVER_LEFTOVER_BYTES = 256 * 1024 * 1024


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


def leftovers_fit_driver(specs: dict[SpecKey, PackSpec], buckets: int) -> bool:
    """Whether the partial sequences of `buckets` buckets surely fit DRIVER_LEFTOVER_BYTES."""
    return buckets * sum(length for _, length in specs) * 5 <= DRIVER_LEFTOVER_BYTES


def pack_leftovers_on_driver(
    partials: pa.Table,
    specs: dict[SpecKey, PackSpec],
    buckets: int,
    thresholds: tuple[int, ...],
    units: tuple[MdsSpec, dict],
    progress: Progress | None = None,
) -> pa.Table:
    """`pack_leftovers` in this process, for partial sequences that `leftovers_fit_driver`:
    the same sequences and units as the Spark tasks would write (it saves a job's start)."""
    ordered = partials.sort_by(
        [("domain", "ascending"), ("seq_len", "ascending"), ("bucket", "ascending")]
    )
    out = leftover_partition(
        ordered.to_batches(), specs, buckets, thresholds, UnitSink(*units, attempt=0)
    )
    done = None if progress is None else progress.done
    batches = list(counting_writes(out, done, "leftover_tasks"))
    return pa.Table.from_batches(batches, SEQUENCE_SCHEMA)

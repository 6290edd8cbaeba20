"""Leftover stage: the buckets' partial sequences packed together, so that a run loses at
most one partial sequence per (domain, length) however many buckets and partitions it has."""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.pack import SEQUENCE_SCHEMA, PackSpec, SpecKey, leftover_partition


def pack_leftovers(
    packed: DataFrame, specs: dict[SpecKey, PackSpec], buckets: int, thresholds: tuple[int, ...]
) -> DataFrame:
    """The buckets' partial sequences packed together per (domain, length), numbered as
    bucket `buckets` (after every real bucket)."""
    partials = (
        packed.where(F.col("row_type") == "partial")
        .repartition(max(1, len(specs)), "domain", "seq_len")
        .sortWithinPartitions("domain", "seq_len", "bucket")
    )
    body = partial(leftover_partition, specs=specs, bucket=buckets, thresholds=thresholds)
    return partials.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))

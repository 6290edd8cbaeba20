"""Sequences stage: read records to packed sequences through one shuffle.

Records are bucketed by a seeded hash of their group (a repository, a subject, or the record
itself) into a fixed number of buckets, and sorted by a seeded group order within each bucket:
what a bucket holds and in which order depends only on the seed and the data, never on the
number of partitions or executors, so neither do the sequences.
"""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from stages.concat import MEMBER_ORDER, unit, with_member_order
from stages.logic.pack import SEQUENCE_SCHEMA
from stages.logic.sequences import INPUT_COLUMNS, SequencePlan, sequences_partition


def build_sequences(
    records: DataFrame, plan: SequencePlan, buckets: int, partitions: int
) -> DataFrame:
    """SEQUENCE_SCHEMA rows: sequences, each bucket's partial sequences, one tally per task."""
    seed = F.lit(plan.seed)
    ordered = (
        with_member_order(records, plan.seed)
        .withColumn("unit", unit())
        .withColumn(
            "bucket",
            F.pmod(F.xxhash64(seed, F.lit("bucket"), "source", "unit"), F.lit(buckets)).cast("int"),
        )
        .withColumn("order", F.xxhash64(seed, F.lit("order"), "source", "unit"))
        .repartition(partitions, "bucket")
        .sortWithinPartitions("bucket", "order", "source", "unit", *MEMBER_ORDER)
        .select(*INPUT_COLUMNS)
    )
    body = partial(sequences_partition, plan=plan)
    return ordered.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))

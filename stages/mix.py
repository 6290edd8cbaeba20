"""Mix stage: the packed sequences each output directory gets, repeated as the mix plans."""

from __future__ import annotations

import json
from functools import partial

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.mds import COMMIT_SCHEMA, MdsSpec, unit_sequences
from longmix.stages.logic.mix import MixTarget
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA, SpecKey

RANK = ["rank", "bucket", "seq_no"]


def read_units(
    spark: SparkSession, spec: MdsSpec, records: dict[tuple[str, int], dict]
) -> DataFrame:
    """The committed units' sequences, read back from their MDS shards (a task per unit)."""
    rows = [
        (directory, bucket, json.dumps(record))
        for (directory, bucket), record in sorted(records.items())
    ]
    units = spark.createDataFrame(rows, from_arrow_schema(COMMIT_SCHEMA))
    body = partial(unit_sequences, spec=spec)
    return units.repartition(max(1, len(rows))).mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))


def is_key(key: SpecKey) -> Column:
    return (F.col("domain") == F.lit(key[0])) & (F.col("seq_len") == F.lit(key[1]))


def by_key(values: dict[SpecKey, Column], otherwise: Column) -> Column:
    column = None
    for key, value in sorted(values.items()):
        column = F.when(is_key(key), value) if column is None else column.when(is_key(key), value)
    return otherwise if column is None else column.otherwise(otherwise)


def extra_thresholds(ranked: DataFrame, targets: dict[SpecKey, MixTarget]) -> dict[SpecKey, tuple]:
    """Per (domain, length) with extras: the rank of the last sequence to get one more copy.
    Computed over (key, rank) only, never moving tokens."""
    extras = {key: t.extra for key, t in targets.items() if t.extra}
    if not extras:
        return {}
    order = Window.partitionBy("domain", "seq_len").orderBy(*RANK)
    wanted = by_key({key: F.lit(n) for key, n in extras.items()}, F.lit(0))
    rows = (
        ranked.select("domain", "seq_len", *RANK)
        .withColumn("position", F.row_number().over(order))
        .where(F.col("position") == wanted)
        .collect()
    )
    return {(r.domain, r.seq_len): (r.rank, r.bucket, r.seq_no) for r in rows}


def at_or_before(threshold: tuple) -> Column:
    """(rank, bucket, seq_no) ordered at or before `threshold`."""
    types = {"rank": "bigint", "bucket": "int", "seq_no": "bigint"}
    bound = F.struct(
        *(F.lit(v).cast(types[n]).alias(n) for n, v in zip(RANK, threshold, strict=True))
    )
    row = F.struct(*(F.col(n).cast(types[n]).alias(n) for n in RANK))
    return row <= bound


def select_sequences(
    sequences: DataFrame, targets: dict[SpecKey, MixTarget], seed: int
) -> DataFrame:
    """The sequences with `directory` and `copy` (0, 1, ...): every planned copy a row."""
    ranked = sequences.withColumn(
        "rank", F.xxhash64(F.lit(seed), F.lit("mix"), "domain", "seq_len", "bucket", "seq_no")
    )
    thresholds = extra_thresholds(ranked, targets)
    copies = by_key(
        {
            key: F.lit(t.copies)
            + (
                F.when(at_or_before(thresholds[key]), 1).otherwise(0)
                if key in thresholds
                else F.lit(0)
            )
            for key, t in targets.items()
        },
        F.lit(0),
    )
    directory = by_key({key: F.lit(t.directory) for key, t in targets.items()}, F.lit(None))
    return (
        ranked.withColumn("copies", copies)
        .where(F.col("copies") > 0)
        .withColumn("directory", directory)
        .withColumn("copy", F.explode(F.sequence(F.lit(0), F.col("copies") - 1)))
    )

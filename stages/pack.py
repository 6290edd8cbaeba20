"""Packing stage: tokens to exact-length sequences, deterministically.

Each document goes to a length variant (by token fraction, seeded) and to one of a fixed
number of buckets (seeded); buckets are packed in a seeded document order. None of this
depends on how many executors or partitions there are, nor on input file order.
"""

from __future__ import annotations

from functools import partial

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.pack import (
    PACK_INPUT_COLUMNS,
    SEQUENCE_SCHEMA,
    PackSpec,
    SpecKey,
    leftover_partition,
    pack_partition,
)

UNIT = 1 << 30


def seeded_hash(seed: int, salt: str) -> Column:
    return F.xxhash64(F.lit(seed), F.lit(salt), F.col("id"))


def length_column(lengths: dict[str, dict[int, float]], seed: int) -> Column:
    """Each domain's documents split over its lengths: a seeded uniform draw per document
    against the cumulative fractions (so token shares follow the fractions in expectation)."""
    draw = F.pmod(seeded_hash(seed, "length"), F.lit(UNIT)) / F.lit(float(UNIT))
    column = None
    for domain, fractions in sorted(lengths.items()):
        choice, cumulative = None, 0.0
        for length, fraction in sorted(fractions.items(), reverse=True):
            cumulative += fraction
            condition = draw < F.lit(cumulative)
            choice = (
                F.when(condition, F.lit(length))
                if choice is None
                else choice.when(condition, F.lit(length))
            )
        choice = choice.otherwise(F.lit(min(fractions)))
        test = F.col("domain") == F.lit(domain)
        column = F.when(test, choice) if column is None else column.when(test, choice)
    return column.cast("int")


def assign(
    tokens: DataFrame, lengths: dict[str, dict[int, float]], buckets: int, seed: int
) -> DataFrame:
    return (
        tokens.withColumn("seq_len", length_column(lengths, seed))
        .withColumn("bucket", F.pmod(seeded_hash(seed, "bucket"), F.lit(buckets)).cast("int"))
        .withColumn("order", seeded_hash(seed, "order"))
    )


def pack(assigned: DataFrame, specs: dict[SpecKey, PackSpec], partitions: int) -> DataFrame:
    """SEQUENCE_SCHEMA rows: sequences, each bucket's partial sequence, and drops."""
    ordered = (
        assigned.repartition(partitions, "domain", "seq_len", "bucket")
        .sortWithinPartitions("domain", "seq_len", "bucket", "order", "id")
        .select(*PACK_INPUT_COLUMNS)
    )
    body = partial(pack_partition, specs=specs)
    return ordered.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))


def pack_leftovers(packed: DataFrame, specs: dict[SpecKey, PackSpec], buckets: int) -> DataFrame:
    """The buckets' partial sequences packed together per (domain, length), numbered as
    bucket `buckets` (after every real bucket)."""
    partials = (
        packed.where(F.col("row_type") == "partial")
        .repartition(max(1, len(specs)), "domain", "seq_len")
        .sortWithinPartitions("domain", "seq_len", "bucket")
    )
    body = partial(leftover_partition, specs=specs, bucket=buckets)
    return partials.mapInArrow(body, from_arrow_schema(SEQUENCE_SCHEMA))


def summarize_packing(assigned: DataFrame, rows: DataFrame) -> dict:
    """Per domain and length: documents and tokens in, sequences and tokens out, special
    tokens added, tokens dropped by reason, and whether every token is accounted for."""
    inputs = (
        assigned.groupBy("domain", "seq_len")
        .agg(F.count("*").alias("documents"), F.sum("length").alias("tokens"))
        .collect()
    )
    outputs = (
        rows.where(F.col("row_type") == "sequence")
        .groupBy("domain", "seq_len")
        .agg(
            F.count("*").alias("sequences"),
            F.sum(F.size("input_ids")).alias("tokens"),
            (F.sum(F.size("indices")) / 2).cast("long").alias("segments"),
        )
        .collect()
    )
    counts = (
        rows.where(F.col("row_type").isin("drop", "added"))
        .groupBy("domain", "seq_len", "row_type", "drop_reason")
        .agg(F.sum("drop_tokens").alias("tokens"), F.sum("drop_documents").alias("documents"))
        .collect()
    )
    out: dict[str, dict] = {}

    def entry(domain: str, seq_len: int) -> dict:
        return out.setdefault(domain, {}).setdefault(
            str(seq_len),
            {
                "documents_in": 0,
                "tokens_in": 0,
                "special_tokens_added": 0,
                "sequences": 0,
                "tokens_out": 0,
                "segments": 0,
                "dropped": {},
            },
        )

    for row in inputs:
        entry(row.domain, row.seq_len).update(documents_in=row.documents, tokens_in=row.tokens)
    for row in outputs:
        entry(row.domain, row.seq_len).update(
            sequences=row.sequences, tokens_out=row.tokens, segments=row.segments
        )
    for row in counts:
        target = entry(row.domain, row.seq_len)
        if row.row_type == "added":
            target["special_tokens_added"] = row.tokens
        else:
            target["dropped"][row.drop_reason] = {"tokens": row.tokens, "documents": row.documents}
    for lengths in out.values():
        for numbers in lengths.values():
            dropped = sum(d["tokens"] for d in numbers["dropped"].values())
            numbers["tokens_accounted"] = (
                numbers["tokens_in"] + numbers["special_tokens_added"]
                == numbers["tokens_out"] + dropped
            )
    return out

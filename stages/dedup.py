"""Exact duplicates, found from the text hashes the read tasks computed: only hashes, ids and
counts cross the shuffle, never text.

Among records with the same hash the first in a fixed order is the original (sources in the
configured priority, then by name, then group, then record id); every other one is a copy of
it. Ordering by group before record keeps a repository duplicated under another name whole on
one side: all its files are copies of the first repository's. The order depends on the data
alone, so the copies do not depend on partitioning.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F

from longmix.stages.logic.schemas import READ_SCHEMA

HASH_COLUMNS = ["source", "id", "group", "hash", "bytes", "tokens"]


def source_rank(priority: list[str]) -> Column:
    """A source's place in `priority`; sources not named come after, in name order."""
    position = F.array_position(F.array(*[F.lit(name) for name in priority]), F.col("source"))
    return F.when(position > 0, position).otherwise(F.lit(len(priority) + 1))


def first_over(window: Window, column: str) -> Column:
    return F.first(column).over(window)


def by(frame: DataFrame, partitions: int, *keys: str) -> DataFrame:
    """`frame` hash-partitioned by `keys`, so the window or aggregation over them that follows
    needs no shuffle of its own: these jobs move little data, and Spark's default of 200
    shuffle partitions (not coalesced here, see `pipeline.spark`) costs seconds a shuffle."""
    return frame.repartition(partitions, *keys)


def with_originals(hashes: DataFrame, priority: list[str], partitions: int) -> DataFrame:
    """HASH_COLUMNS rows with the source, id and group of the first record of their hash."""
    window = Window.partitionBy("hash").orderBy(source_rank(priority), "source", "group", "id")
    return by(hashes, partitions, "hash").select(
        *HASH_COLUMNS,
        first_over(window, "source").alias("original_source"),
        first_over(window, "id").alias("original"),
        first_over(window, "group").alias("original_group"),
    )


def copies(hashes: DataFrame, priority: list[str], partitions: int) -> DataFrame:
    """The records that copy an earlier one, each with the one it copies."""
    originals = with_originals(hashes, priority, partitions)
    return originals.where(F.col("id") != F.col("original"))


def copy_counts(hashes: DataFrame, priority: list[str], partitions: int) -> list[Row]:
    """Copies per (source, source of the original, in the same group or not)."""
    same_group = (
        F.col("group").isNotNull()
        & (F.col("source") == F.col("original_source"))
        & (F.col("group") == F.col("original_group"))
    )
    keys = ["source", "original_source", "same_group"]
    found = copies(hashes, priority, partitions).withColumn("same_group", same_group)
    return (
        by(found, partitions, *keys)
        .groupBy(*keys)
        .agg(
            F.count("*").alias("documents"),
            F.sum("bytes").alias("bytes"),
            F.sum("tokens").alias("tokens"),
        )
        .collect()
    )


def group_copy_counts(hashes: DataFrame, priority: list[str], partitions: int) -> list[Row]:
    """Whole groups (repositories, subjects) whose records' hashes, as a multiset, equal an
    earlier group's: per (source, source of the original)."""
    signature = F.sha2(F.concat_ws(",", F.array_sort(F.collect_list(F.hex("hash")))), 256)
    grouped = hashes.where(F.col("group").isNotNull())
    groups = (
        by(grouped, partitions, "source", "group")
        .groupBy("source", "group")
        .agg(
            signature.alias("signature"),
            F.count("*").alias("documents"),
            F.sum("bytes").alias("bytes"),
            F.sum("tokens").alias("tokens"),
        )
    )
    window = Window.partitionBy("signature").orderBy(source_rank(priority), "source", "group")
    originals = by(groups, partitions, "signature").select(
        "*",
        first_over(window, "source").alias("original_source"),
        first_over(window, "group").alias("original_group"),
    )
    copied = (F.col("source") != F.col("original_source")) | (
        F.col("group") != F.col("original_group")
    )
    return (
        by(originals.where(copied), partitions, "source", "original_source")
        .groupBy("source", "original_source")
        .agg(
            F.count("*").alias("groups"),
            F.sum("documents").alias("documents"),
            F.sum("bytes").alias("bytes"),
            F.sum("tokens").alias("tokens"),
        )
        .collect()
    )


def record_hashes(records: DataFrame) -> DataFrame:
    """HASH_COLUMNS of the read documents (tokens unknown before tokenizing)."""
    return records.where(F.col("skip_reason").isNull()).select(
        "source", "id", "group", "hash", "bytes", F.lit(None).cast("long").alias("tokens")
    )


def without_copies(records: DataFrame, copied: DataFrame) -> DataFrame:
    """READ_SCHEMA records in which every copy is a skipped record (`duplicate`), so it is
    counted with the other skips and never reaches packing."""
    marked = records.join(
        copied.select("source", "id", F.col("original").alias("copy_of")), ["source", "id"], "left"
    )
    is_copy = F.col("copy_of").isNotNull()
    replaced = {
        "text": F.lit(None).cast("string"),
        "skip_reason": F.lit("duplicate"),
        "skip_detail": F.concat(F.col("id"), F.lit(" copies "), F.col("copy_of")),
        "skip_bad": F.lit(False),
        "skip_records": F.lit(1).cast("long"),
    }
    return marked.select(
        *[
            F.when(is_copy, replaced[name]).otherwise(F.col(name)).alias(name)
            if name in replaced
            else F.col(name)
            for name in READ_SCHEMA.names
        ]
    )

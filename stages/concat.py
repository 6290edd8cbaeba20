"""Concatenation stage: Stack files into one document per repository, textbook chapters into
books and books into subjects, in a seeded order that no input order or partitioning changes."""

from __future__ import annotations

from functools import partial

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.concat import INPUT_COLUMNS, concat_partition
from longmix.stages.logic.schemas import DOCUMENT_SCHEMA
from longmix.stages.logic.sources import SourceSpec

SEP = "\x1f"
# Within a group: books (subgroups) in seeded order, chapters by position, files seeded.
MEMBER_ORDER = ["subgroup_key", "position", "member_key", "id"]


def seeded_key(seed: int, *columns: str) -> Column:
    """A pseudo-random but reproducible sort key: sha256 of the seed and the columns."""
    parts = [F.lit(str(seed))] + [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in columns]
    return F.sha2(F.concat_ws(SEP, *parts), 256)


def unit() -> Column:
    """What stays together: a group, else the record itself (a skipped record: its file)."""
    return F.coalesce(F.col("group"), F.col("id"), F.col("file"))


def with_member_order(records: DataFrame, seed: int) -> DataFrame:
    """The MEMBER_ORDER key columns (Stack: not alphabetical, not by dependency, as ProLong)."""
    return records.withColumn(
        "subgroup_key", seeded_key(seed, "source", "group", "subgroup")
    ).withColumn("member_key", seeded_key(seed, "source", "group", "subgroup", "member"))


def concatenate(
    records: DataFrame,
    specs: dict[str, SourceSpec],
    seed: int,
    max_bytes: int,
    partitions: int,
) -> DataFrame:
    """Documents (DOCUMENT_SCHEMA) from kept records: groups concatenated, the rest as is."""
    ordered = (
        with_member_order(records, seed)
        .repartition(partitions, F.col("source"), unit())
        .sortWithinPartitions("source", "group", *MEMBER_ORDER)
        .select(*INPUT_COLUMNS)
    )
    body = partial(concat_partition, specs=specs, max_bytes=max_bytes)
    return ordered.mapInArrow(body, from_arrow_schema(DOCUMENT_SCHEMA))

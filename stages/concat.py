"""Concatenation stage: Stack files into one document per repository, textbook chapters into
books and books into subjects, in a seeded order that no input order or partitioning changes."""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.concat import INPUT_COLUMNS, concat_partition
from stages.logic.documents import DOCUMENT_SCHEMA
from stages.logic.sources import SourceSpec

SEP = "\x1f"


def seeded_key(seed: int, *columns: str):
    """A pseudo-random but reproducible sort key: sha256 of the seed and the columns."""
    parts = [F.lit(str(seed))] + [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in columns]
    return F.sha2(F.concat_ws(SEP, *parts), 256)


def concatenate(
    documents: DataFrame,
    specs: dict[str, SourceSpec],
    seed: int,
    max_bytes: int,
    partitions: int,
) -> DataFrame:
    """Documents (DOCUMENT_SCHEMA): grouped records concatenated, the others passed through.

    Members are ordered by a seeded hash of their path (Stack: not alphabetical, not by
    dependency, as ProLong does), books within a subject likewise, chapters by position.
    """
    grouped = documents.where(F.col("group").isNotNull())
    ordered = (
        grouped.withColumn("subgroup_key", seeded_key(seed, "source", "group", "subgroup"))
        .withColumn("member_key", seeded_key(seed, "source", "group", "subgroup", "member"))
        .repartition(partitions, "source", "group")
        .sortWithinPartitions("source", "group", "subgroup_key", "position", "member_key", "id")
        .select(*INPUT_COLUMNS)
    )
    body = partial(concat_partition, specs=specs, max_bytes=max_bytes)
    concatenated = ordered.mapInArrow(body, from_arrow_schema(DOCUMENT_SCHEMA))
    single = documents.where(F.col("group").isNull()).select(
        "id",
        "source",
        "domain",
        "kind",
        "text",
        "bytes",
        "group",
        F.lit(0).cast("int").alias("part"),
        F.lit(1).cast("long").alias("members"),
    )
    return single.unionByName(concatenated)


def summarize_documents(documents: DataFrame) -> dict:
    """Per source and domain: documents out, bytes, groups, and groups split into parts."""
    rows = (
        documents.groupBy("source", "domain")
        .agg(
            F.count("*").alias("documents"),
            F.sum("bytes").alias("bytes"),
            F.max("bytes").alias("max_document_bytes"),
            F.countDistinct("group").alias("groups"),
            F.countDistinct(F.when(F.col("part") > 0, F.col("group"))).alias("split_groups"),
            F.sum("members").alias("members"),
        )
        .collect()
    )
    summary: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (r.source, r.domain)):
        numbers = {k: v for k, v in row.asDict().items() if k not in ("source", "domain")}
        summary.setdefault(row.source, {})[row.domain] = numbers
    return summary

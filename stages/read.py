"""Read stage: the file list is distributed and each Spark task reads its own bin of files."""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.documents import READ_SCHEMA
from stages.logic.read import ReadTask, encode_bin, plan_bins, read_partition
from stages.logic.sources import SourceSpec
from stages.logic.storage import StorageOptions


def read_sources(
    spark: SparkSession,
    tasks: list[ReadTask],
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    target_bytes: int,
) -> DataFrame:
    """Documents and skipped records (READ_SCHEMA) of every file in `tasks`."""
    bins = plan_bins(tasks, target_bytes, min_bins=spark.sparkContext.defaultParallelism)
    rows = [(index, encode_bin(b)) for index, b in enumerate(bins)]
    plan = spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), "bin int, files string"
    )
    body = partial(read_partition, specs=specs, storage=storage, strict=strict)
    return plan.mapInArrow(body, from_arrow_schema(READ_SCHEMA))


def summarize_read(records: DataFrame) -> dict:
    """Documents and bytes per source and domain, and skipped records by reason and file."""
    kept = (
        records.where(F.col("skip_reason").isNull())
        .groupBy("source", "domain")
        .agg(F.count("*").alias("documents"), F.sum("bytes").alias("bytes"))
        .collect()
    )
    skipped = (
        records.where(F.col("skip_reason").isNotNull())
        .groupBy("source", "skip_reason", "skip_bad", "file")
        .agg(
            F.count("*").alias("count"),
            F.min("record").alias("first_record"),
            F.min_by("skip_detail", "record").alias("example"),
        )
        .collect()
    )
    sources: dict[str, dict] = {}
    for row in sorted(kept, key=lambda r: (r.source, r.domain)):
        sources.setdefault(row.source, {"domains": {}, "skipped": {}})["domains"][row.domain] = {
            "documents": row.documents,
            "bytes": row.bytes,
        }
    for row in sorted(skipped, key=lambda r: (r.source, r.skip_reason, r.file)):
        entry = sources.setdefault(row.source, {"domains": {}, "skipped": {}})["skipped"]
        reason = entry.setdefault(
            row.skip_reason, {"count": 0, "counts_as_bad": row.skip_bad, "files": {}}
        )
        reason["count"] += row["count"]
        reason["files"][row.file] = {
            "count": row["count"],
            "first_record": row.first_record,
            "example": row.example,
        }
    return sources

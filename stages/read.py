"""Read stage: the file list is distributed and each Spark task reads its own bin of files."""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.read import ReadTask, encode_bin, plan_bins, read_partition
from stages.logic.schemas import READ_SCHEMA
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

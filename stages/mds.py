"""MDS stage: the mixed sequences written as shards, one commit record per unit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.mds import COMMIT_SCHEMA, WRITE_COLUMNS, MdsSpec, write_partition
from longmix.stages.tasks import attempt_number


def write_attempt(batches: Iterable[pa.RecordBatch], spec: MdsSpec) -> Iterator[pa.RecordBatch]:
    """The task attempt's number names its private folders."""
    yield from write_partition(batches, spec, attempt_number())


def write_mds(selected: DataFrame, spec: MdsSpec, partitions: int) -> DataFrame:
    """COMMIT_SCHEMA rows, one per (directory, bucket) unit written."""
    ordered = (
        selected.repartition(partitions, "directory", "bucket")
        .sortWithinPartitions("directory", "bucket", "seq_no", "copy")
        .select(*WRITE_COLUMNS)
    )
    body = partial(write_attempt, spec=spec)
    return ordered.mapInArrow(body, from_arrow_schema(COMMIT_SCHEMA))

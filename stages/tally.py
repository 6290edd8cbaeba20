"""Counting a DataFrame's rows into a Tally, for runs that stop before the fused pass."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from longmix.stages.logic.tally import TALLY_SCHEMA, Tally, tally_partition


def collect_tally(
    frame: DataFrame, columns: list[str], count: Callable[[Tally, dict[str, Any]], None]
) -> Tally:
    body = partial(tally_partition, columns=columns, count=count)
    rows = frame.select(*columns).mapInArrow(body, from_arrow_schema(TALLY_SCHEMA)).collect()
    return Tally.merged([row.tally for row in rows])

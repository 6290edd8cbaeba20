"""Tokenize stage: documents to token arrays in Spark tasks over Arrow batches."""

from __future__ import annotations

from functools import partial

from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from stages.logic.tokenize import TOKENS_SCHEMA, tokenize_partition
from stages.logic.tokenizers import TokenizerSpec


def tokenize(documents: DataFrame, spec: TokenizerSpec) -> DataFrame:
    """TOKENS_SCHEMA rows; the text is dropped here."""
    body = partial(tokenize_partition, spec=spec)
    return documents.mapInArrow(body, from_arrow_schema(TOKENS_SCHEMA))

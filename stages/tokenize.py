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


def summarize_tokens(tokens: DataFrame) -> dict:
    from pyspark.sql import functions as F

    rows = (
        tokens.groupBy("domain", "kind")
        .agg(F.count("*").alias("documents"), F.sum("length").alias("tokens"))
        .collect()
    )
    out: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (r.domain, r.kind)):
        out.setdefault(row.domain, {})[row.kind] = {
            "documents": row.documents,
            "tokens": row.tokens,
        }
    return out

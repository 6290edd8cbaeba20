"""Counts in the user's units (files, bytes, documents, sequences, tokens) that each Spark task
sends to the driver when it finishes, through one accumulator, beside what the driver planned
(tasks, files, bytes): what `pipeline.progress` shows while a run works. A retried task counts
again, so the counts are for progress only; the report's numbers come from the tasks' tallies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyspark.accumulators import Accumulator, AccumulatorParam


class SumOfCounts(AccumulatorParam):
    """Dicts of counts added key by key."""

    def zero(self, value: dict[str, int]) -> dict[str, int]:
        return {}

    def addInPlace(self, total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
        for key, value in more.items():
            total[key] = total.get(key, 0) + value
        return total


@dataclass
class Progress:
    """`done`: what finished tasks sent; `planned`: what the driver knows before they run
    (`read_tasks`, `files`, `bytes`, `pack_tasks`)."""

    done: Accumulator
    planned: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def started(cls, spark) -> Progress:
        return cls(spark.sparkContext.accumulator({}, SumOfCounts()))

    def counts(self) -> dict[str, int]:
        return dict(self.done.value)


def written(out: pa.RecordBatch) -> tuple[int, int]:
    """(sequences, tokens) a SEQUENCE_SCHEMA batch carries: its `sequence` rows, or the MDS
    units its `commit` rows record."""
    sequences = tokens = 0
    for kind, length, record in zip(
        out.column("row_type").to_pylist(),
        out.column("seq_len").to_pylist(),
        out.column("record").to_pylist(),
        strict=True,
    ):
        if kind == "sequence":
            sequences, tokens = sequences + 1, tokens + length
        elif kind == "commit":
            unit = json.loads(record)
            sequences, tokens = sequences + unit["samples"], tokens + unit["tokens"]
    return sequences, tokens


def counting_writes(
    batches: Iterator[pa.RecordBatch], done: Accumulator | None, task: str
) -> Iterator[pa.RecordBatch]:
    """The batches passed on; their sequences and tokens (and one `task`) into `done` at the
    end."""
    sequences = tokens = 0
    for out in batches:
        more = written(out)
        sequences, tokens = sequences + more[0], tokens + more[1]
        yield out
    if done is not None:
        done.add({task: 1, "sequences": sequences, "tokens": tokens})

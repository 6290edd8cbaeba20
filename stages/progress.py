"""Counts in the user's units (files, bytes, documents, sequences, tokens) that each Spark task
sends to the driver when it finishes, through one accumulator, beside what the driver planned
(tasks, files, bytes): what `pipeline.progress` shows while a run works. A retried task counts
again, so the counts are for progress only; the report's numbers come from the tasks' tallies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

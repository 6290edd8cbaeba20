"""What a running Spark task knows about itself: its attempt number, which names the private
folders an attempt writes (so that a retried or speculative copy never writes over another)."""

from __future__ import annotations

from pyspark import TaskContext

from longmix.stages.logic.mds import MdsSpec, UnitSink


def attempt_number() -> int:
    return TaskContext.get().attemptNumber()


def attempt_sink(units: tuple[MdsSpec, dict] | None) -> UnitSink | None:
    """The attempt's MDS sink, when the task writes its sequences as MDS units."""
    if units is None:
        return None
    return UnitSink(*units, attempt_number())

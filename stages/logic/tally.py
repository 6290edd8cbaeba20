"""Counts that tasks keep while they work and the driver merges: the run report's numbers.

Counting inside the tasks that already touch every record costs nothing extra; a separate
Spark aggregation would re-read (or force a persist of) the whole corpus for a few integers.
A tally travels as one JSON row per task and merges associatively, so retries, partition
counts and task order do not change the merged result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from longmix.stages.logic.batches import rows_of

Key = tuple[str, ...]
MISSING = object()


class Tally:
    """Numbers per key. Fields merge by sum, except `max_*` (maximum) and `first_record`
    (minimum, carrying its `example` along)."""

    def __init__(self) -> None:
        self.entries: dict[Key, dict[str, Any]] = {}

    def add(self, key: Key, **values: int) -> None:
        entry = self.entries.setdefault(key, {})
        for name, value in values.items():
            entry[name] = entry.get(name, 0) + value

    def maximum(self, key: Key, name: str, value: int) -> None:
        entry = self.entries.setdefault(key, {})
        entry[name] = max(entry.get(name, value), value)

    def first(self, key: Key, record: int | None, example: str | None) -> None:
        """The earliest record number seen (None, a whole file, counts as latest)."""
        entry = self.entries.setdefault(key, {})
        current = entry.get("first_record", MISSING)
        if current is MISSING or (record is not None and (current is None or record < current)):
            entry["first_record"], entry["example"] = record, example

    def merge(self, other: Tally) -> Tally:
        for key, values in other.entries.items():
            for name, value in values.items():
                if name == "first_record":
                    self.first(key, value, values.get("example"))
                elif name.startswith("max_"):
                    self.maximum(key, name, value)
                elif name != "example":
                    self.add(key, **{name: value})
        return self

    def where(self, head: str) -> dict[Key, dict[str, Any]]:
        """Entries whose key starts with `head`, keyed by the rest."""
        return {key[1:]: values for key, values in sorted(self.entries.items()) if key[0] == head}

    def to_json(self) -> str:
        return json.dumps(sorted([list(k), v] for k, v in self.entries.items()))

    @classmethod
    def from_json(cls, text: str) -> Tally:
        tally = cls()
        tally.entries = {tuple(key): values for key, values in json.loads(text)}
        return tally

    @classmethod
    def merged(cls, texts: list[str]) -> Tally:
        total = cls()
        for text in texts:
            total.merge(cls.from_json(text))
        return total


TALLY_SCHEMA = pa.schema([("tally", pa.large_string())])


def tally_partition(
    batches: Iterable[pa.RecordBatch],
    columns: list[str],
    count: Callable[[Tally, dict[str, Any]], None],
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one tally row for the partition's rows."""
    tally = Tally()
    for row in rows_of(batches, columns):
        count(tally, row)
    yield pa.RecordBatch.from_pylist([{"tally": tally.to_json()}], schema=TALLY_SCHEMA)

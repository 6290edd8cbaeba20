"""Copies counted from hash rows held in memory: the same counts as `stages.dedup`'s Spark
plan, for runs whose hash rows are few enough to collect to the driver.

Why both: Spark's window and aggregation jobs cost seconds to start in a fresh JVM whatever
they hold (5 s of a 40 s run on the benchmark corpus, 0.7 s here), and most runs are small;
a multi-terabyte run's hashes do not fit one process and go through Spark. The two are
tested against each other on the same rows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Counts = list[dict[str, Any]]


def ranked(table: pa.Table, priority: list[str], key: str) -> pa.Table:
    """Sorted by `key`, then as `stages.dedup` orders originals first: source priority,
    source, group (null first), record id."""
    place = {name: k + 1 for k, name in enumerate(priority)}
    sources = table.column("source").to_pylist()
    rank = pa.array([place.get(s, len(priority) + 1) for s in sources], pa.int32())
    table = table.append_column("rank", rank)
    names = [key, "rank", "source", *[n for n in ("group", "id") if n in table.column_names]]
    order = [(name, "ascending", "at_start") for name in names]  # nulls first, as Spark's asc
    return table.take(pc.sort_indices(table, sort_keys=order))


def run_starts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted `values`: whether each row starts a run of equal values, and the index of
    the row that starts its run (its original)."""
    starts = np.ones(len(values), bool)
    starts[1:] = values[1:] != values[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(values)), 0))
    return starts, first


def summed(table: pa.Table, keys: list[str], counted: str) -> Counts:
    sums = [(name, "sum") for name in ("documents", "bytes", "tokens")]
    rows = table.group_by(keys).aggregate([*sums, (counted, "count")])
    renamed = {f"{name}_sum": name for name in ("documents", "bytes", "tokens")}
    renamed[f"{counted}_count"] = "count"
    return [{renamed.get(k, k): v for k, v in row.items()} for row in rows.to_pylist()]


def copy_counts(table: pa.Table, priority: list[str]) -> Counts:
    """Copies per (source, source of the original, in the same group or not)."""
    table = ranked(table, priority, "hash")
    starts, first = run_starts(table.column("hash").to_numpy(zero_copy_only=False))
    sources = np.array(table.column("source").to_pylist(), object)
    groups = np.array(table.column("group").to_pylist(), object)
    copied = ~starts
    original_source, original_group = sources[first], groups[first]
    same = (groups != None) & (sources == original_source) & (groups == original_group)  # noqa: E711
    found = pa.table(
        {
            "source": sources[copied],
            "original_source": original_source[copied],
            "same_group": same[copied].astype(bool),
            "documents": np.ones(copied.sum(), np.int64),
            "bytes": table.column("bytes").filter(pa.array(copied)),
            "tokens": table.column("tokens").filter(pa.array(copied)),
        }
    )
    keys = ["source", "original_source", "same_group"]
    return [{k: v for k, v in row.items() if k != "count"} for row in summed(found, keys, "source")]


def signature(hashes: list[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(sorted(hashes)), digest_size=16).digest()


def group_copy_counts(table: pa.Table, priority: list[str]) -> Counts:
    """Whole groups whose records' hashes, as a multiset, equal an earlier group's."""
    grouped = table.filter(pc.is_valid(table.column("group")))
    if not grouped.num_rows:
        return []
    per_group = grouped.group_by(["source", "group"]).aggregate(
        [("hash", "list"), ("bytes", "sum"), ("tokens", "sum"), ("hash", "count")]
    )
    groups = pa.table(
        {
            "source": per_group.column("source"),
            "group": per_group.column("group"),
            "signature": [signature(h) for h in per_group.column("hash_list").to_pylist()],
            "documents": per_group.column("hash_count"),
            "bytes": per_group.column("bytes_sum"),
            "tokens": per_group.column("tokens_sum"),
        }
    )
    groups = ranked(groups, priority, "signature")
    starts, first = run_starts(groups.column("signature").to_numpy(zero_copy_only=False))
    sources = np.array(groups.column("source").to_pylist(), object)
    copied = pa.array(~starts)
    found = pa.table(
        {
            "source": sources[~starts],
            "original_source": sources[first][~starts],
            "documents": groups.column("documents").filter(copied),
            "bytes": groups.column("bytes").filter(copied),
            "tokens": groups.column("tokens").filter(copied),
        }
    )
    rows = summed(found, ["source", "original_source"], "source")
    return [{**{k: v for k, v in r.items() if k != "count"}, "groups": r["count"]} for r in rows]

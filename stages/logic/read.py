"""The read stage's per-partition work: a bin of files in, Arrow batches of READ_SCHEMA out."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from itertools import pairwise

import pyarrow as pa

from longmix.stages.logic.batches import batched
from longmix.stages.logic.errors import TaskError
from longmix.stages.logic.faults import NO_FAULTS, Faults, hold_before_read
from longmix.stages.logic.fingerprints import Fingerprints
from longmix.stages.logic.readers import BadRecordError, Skip, read_file, record_unit
from longmix.stages.logic.schemas import READ_SCHEMA, read_rows, row_bytes
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.storage import StorageOptions, file_version, open_input


@dataclass(frozen=True)
class ReadTask:
    """A file to read, or a piece of one: bytes [start, end) of a parquet file, which holds
    the row groups whose first byte lies there (`readers.row_groups_in`)."""

    source: str
    uri: str
    relative: str
    size: int  # the file's, as listed
    modified: str = ""
    stamp: str = ""  # `FileEntry.stamp` when listed; "" checks the size alone
    start: int = 0
    end: int = 0  # 0: the whole file

    @property
    def weight(self) -> int:
        """The bytes this task reads."""
        return self.end - self.start if self.end else self.size

    def pieces(self, count: int) -> list[ReadTask]:
        """The file as `count` pieces of equal byte ranges (itself when count <= 1)."""
        if count <= 1:
            return [self]
        cuts = [self.size * k // count for k in range(count + 1)]
        return [replace(self, start=a, end=b) for a, b in pairwise(cuts)]


def plan_bins(tasks: list[ReadTask], target_bytes: int, min_bins: int) -> list[list[ReadTask]]:
    """Files grouped into bins of similar total bytes (largest first onto the lightest bin),
    so one Spark task does not get most of the text."""
    if not tasks:
        return []
    total = sum(t.weight for t in tasks)
    count = min(len(tasks), max(min_bins, -(-total // target_bytes)))
    heap = [(0, index) for index in range(count)]
    bins: list[list[ReadTask]] = [[] for _ in range(count)]
    for task in sorted(tasks, key=lambda t: (-t.weight, t.uri, t.start)):
        load, index = heapq.heappop(heap)
        bins[index].append(task)
        heapq.heappush(heap, (load + task.weight, index))
    return [sorted(b, key=lambda t: (t.uri, t.start)) for b in bins]


def encode_bin(tasks: list[ReadTask]) -> str:
    return json.dumps([asdict(t) for t in tasks])


def decode_bin(files_json: str) -> list[ReadTask]:
    return [ReadTask(**task) for task in json.loads(files_json)]


def read_bin(
    files_json: str,
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    fingerprints: Fingerprints,
    faults: Faults = NO_FAULTS,
) -> Iterator[pa.RecordBatch]:
    items = read_items(files_json, specs, storage, strict, faults)
    rows = read_rows(items, fingerprints.mark)
    yield from batched(rows, READ_SCHEMA, size_of=row_bytes)


def read_items(
    files_json: str,
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    faults: Faults = NO_FAULTS,
):
    opener = partial(open_input, options=storage)
    for task in json.loads(files_json):
        spec = specs[task["source"]]
        hold_before_read(faults, task["uri"])
        unchanged_since_listed(task, storage)
        record = 0
        part = (task["start"], task["end"]) if task.get("end") else None
        try:
            for item in read_file(spec, task["uri"], task["relative"], opener, part):
                if strict and isinstance(item, Skip) and item.bad:
                    raise BadRecordError(item.describe(record_unit(spec)))
                record = item.record if isinstance(item, Skip) else item.metadata["record"]
                yield item
        except TaskError:
            raise
        except Exception as exc:  # an unforeseen failure still names its file and record
            where = f"{task['uri']}, {record_unit(spec)} after {record}"
            raise TaskError(f"cannot read: {type(exc).__name__}: {exc} ({where})") from exc
        unchanged_since_listed(task, storage)


def unchanged_since_listed(task: dict, storage: StorageOptions) -> None:
    """The file is as the run listed it (size, and its stamp where one was taken): checked
    when a task opens it and again when it has read it. Units are committed only after every
    file feeding them is read (the shuffled pass: after the read stage; the direct pass: at
    the end of the bin), so a run that fails here commits nothing of the changed file."""
    now = file_version(task["uri"], storage)
    if now is None:
        raise TaskError(f"{task['uri']} was removed while the run read its inputs; run again")
    size, stamp = now
    if size != task["size"]:
        change = f"size {task['size']} -> {size}"
    elif task["stamp"] and stamp != task["stamp"]:
        change = "rewritten: " + ("ETag" if task["uri"].startswith("s3://") else "modified time")
        change += f" {task['stamp']} -> {stamp}"
    else:
        return
    raise TaskError(f"{task['uri']} changed while the run read its inputs ({change}); run again")


def read_partition(
    batches: Iterable[pa.RecordBatch],
    specs: dict[str, SourceSpec],
    storage: StorageOptions,
    strict: bool,
    fingerprints: Fingerprints,
    faults: Faults = NO_FAULTS,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each input row names a bin of files (JSON) to read."""
    for batch in batches:
        for files_json in batch.column("files").to_pylist():
            yield from read_bin(files_json, specs, storage, strict, fingerprints, faults)

"""Writing the mix as mosaicml-streaming (MDS) shards, exactly once.

Work is cut into units: one (output directory, bucket) each, whose samples depend only on
config, seed and data. A task attempt writes a unit (`mds_format.ShardWriter`: MDSWriter's
bytes) into its own folder `<directory>/b<bucket>-a<attempt>` (shards uploaded from the task
when the output is on S3), then claims the unit by creating
`_commits/<directory>/b<bucket>.json` if it does not exist yet (an atomic create locally, a
conditional PUT on S3). The first claim wins; a losing attempt (a retry after a commit, a
speculative copy) deletes its own folder. The driver then merges the committed units' shard
lists (carried by their commit records) into one index per directory and deletes every
uncommitted folder. `dataframe_to_mds` has no such commit: a retried or speculative task
would leave a second copy of its shards.

Every attempt folder is first recorded in `_attempts/<directory>/<folder>`: cleanup deletes
only folders these records name, never what a listing of the output happens to show.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np
import pyarrow as pa

from longmix.stages.logic.errors import TaskError
from longmix.stages.logic.faults import NO_FAULTS, Faults, fail_once_at, hold_once
from longmix.stages.logic.mds_format import (
    INDEX,
    ShardWriter,
    merged_index,
    raw_shard,
    shard_samples,
)
from longmix.stages.logic.pack import Sequence
from longmix.stages.logic.rows import RowBuffer, batch_sequences
from longmix.stages.logic.storage import (
    StorageOptions,
    claim,
    delete_file,
    delete_folder,
    delete_if_empty,
    exists,
    is_s3,
    join,
    list_files,
    open_input,
    read_text,
    upload_folder,
    write_text,
)

COMMIT_SCHEMA = pa.schema(
    [
        ("directory", pa.large_string()),
        ("bucket", pa.int32()),
        ("record", pa.large_string()),  # the unit's commit record, JSON
    ]
)
WRITE_COLUMNS = ["directory", "bucket", "seq_no", "copy", "domain", "input_ids", "indices", "mask"]
COMMITS = "_commits"
# Beside a finished pass's units: its digest and report sections (a rerun that changes only
# the mix reuses them). Deleted with stale commits.
PASS_MARKER = "_pass.json"
ATTEMPTS = "_attempts"


@dataclass(frozen=True)
class MdsSpec:
    root: str
    storage: StorageOptions
    indices_dtype: str = "uint32"
    compression: str | None = None
    shard_size: int = 64 * 1024 * 1024
    masked: frozenset[str] = frozenset()  # directories whose samples carry `mask`
    digest: str = ""  # of the config the shards come from: commits of another are stale
    faults: Faults = NO_FAULTS

    def columns(self, directory: str) -> dict[str, str]:
        columns = {
            "input_ids": "ndarray:uint32",
            "indices": f"ndarray:{self.indices_dtype}",
            "domain": "str",
            "length": "int32",
        }
        if directory in self.masked:
            columns["mask"] = "ndarray:uint8"
        return columns


def unit_name(bucket: int) -> str:
    return f"b{bucket:05d}"


def commit_uri(spec: MdsSpec, directory: str, bucket: int) -> str:
    return join(spec.root, COMMITS, directory, f"{unit_name(bucket)}.json")


def attempt_uri(spec: MdsSpec, directory: str, folder: str) -> str:
    return join(spec.root, ATTEMPTS, directory, folder)


def start_attempt(spec: MdsSpec, directory: str, folder: str) -> None:
    """Record the attempt folder before writing it; clear what a killed earlier attempt of
    the same name left. A folder of that name that no record names is not longmix's."""
    target = join(spec.root, directory, folder)
    if not claim(attempt_uri(spec, directory, folder), "", spec.storage):
        delete_folder(target, spec.storage)
    elif exists(target, spec.storage):
        raise TaskError(f"{target} exists and longmix did not write it; move it away")


def recorded_attempts(spec: MdsSpec) -> dict[str, set[str]]:
    """Directory -> the attempt folders longmix recorded in it."""
    out: dict[str, set[str]] = {}
    base = join(spec.root, ATTEMPTS)
    for uri in list_files(base, spec.storage):
        directory, _, folder = uri[len(base) + 1 :].rpartition("/")
        out.setdefault(directory, set()).add(folder)
    return out


def samples_of(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(directory, bucket, sample) in row order; arrays are views into the batch."""
    for batch in batches:
        columns = [batch.column(c).to_pylist() for c in ("directory", "bucket", "domain")]
        rows = zip(*columns, batch_sequences(batch), strict=True)
        for directory, bucket, domain, sequence in rows:
            sample = {
                "input_ids": sequence.input_ids,
                "indices": sequence.indices,
                "domain": domain,
                "length": len(sequence.input_ids),
            }
            if sequence.mask is not None:
                sample["mask"] = sequence.mask
            yield directory, bucket, sample


def write_partition(
    batches: Iterable[pa.RecordBatch], spec: MdsSpec, attempt: int
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over rows sorted by (directory, bucket, seq_no, copy): each unit
    written and claimed; one COMMIT_SCHEMA row per unit with the winning attempt's record."""
    for (directory, bucket), samples in groupby(samples_of(batches), key=lambda s: s[:2]):
        record = write_unit(spec, directory, bucket, (s for _, _, s in samples), attempt)
        yield pa.RecordBatch.from_pylist(
            [{"directory": directory, "bucket": bucket, "record": json.dumps(record)}],
            schema=COMMIT_SCHEMA,
        )


def write_unit(
    spec: MdsSpec, directory: str, bucket: int, samples: Iterable[dict], attempt: int
) -> dict[str, Any]:
    unit = UnitWriter(spec, directory, bucket, attempt)
    for sample in samples:
        unit.write(sample)
    return unit.commit()


class UnitWriter:
    """One unit's samples written into the attempt's own folder, then claimed. A unit that
    an earlier attempt or run committed is not written again: its record stands."""

    def __init__(self, spec: MdsSpec, directory: str, bucket: int, attempt: int) -> None:
        self.spec = spec
        self.directory = directory
        self.bucket = bucket
        self.marker = commit_uri(spec, directory, bucket)
        self.record: dict[str, Any] | None = None
        if exists(self.marker, spec.storage):  # committed by an attempt Spark did not see end
            self.record = json.loads(read_text(self.marker, spec.storage))
            return
        self.folder = f"{unit_name(bucket)}-a{attempt}"
        self.target = join(spec.root, directory, self.folder)
        start_attempt(spec, directory, self.folder)
        self.scratch = tempfile.mkdtemp(prefix="longmix-mds-") if is_s3(self.target) else None
        self.fail_at = fail_once_at(spec.faults)
        self.count = self.tokens = 0
        self.writer = self.guarded(
            ShardWriter,
            self.scratch or self.target,
            spec.columns(directory),
            spec.compression,
            spec.shard_size,
        )

    def write(self, sample: dict[str, Any]) -> None:
        if self.record is not None:
            return
        self.guarded(self.writer.write, encode(sample, self.spec))
        self.count += 1
        self.tokens += sample["length"]
        if self.count == self.fail_at:
            self.guarded(fail, f"faults.fail_once: attempt dies in {self.target}")

    def commit(self) -> dict[str, Any]:
        if self.record is not None:
            return self.record
        shards = self.guarded(self.writer.finish)
        if self.scratch:
            # Sequential, index.json last: parallel uploads sharing one boto3 client exhaust
            # its retry quota (500 units, 14 a retry) in a 10-second outage (measured).
            self.guarded(upload_folder, self.scratch, self.target, self.spec.storage)
            shutil.rmtree(self.scratch, ignore_errors=True)
        record = {
            "digest": self.spec.digest,
            "directory": self.directory,
            "bucket": self.bucket,
            "folder": self.folder,
            "samples": self.count,
            "tokens": self.tokens,
            "shards": shards,
        }
        if claim(self.marker, json.dumps(record, sort_keys=True), self.spec.storage):
            hold_once(self.spec.faults)
            return record
        delete_folder(self.target, self.spec.storage)
        return json.loads(read_text(self.marker, self.spec.storage))

    def guarded(self, step, *args):
        """A step of writing; its failure names the unit folder and the sample."""
        try:
            return step(*args)
        except Exception as exc:
            if self.scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)
            cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise TaskError(
                f"cannot write {self.target}: {cause} ({self.directory}, sample {self.count})"
            ) from exc


def fail(message: str) -> None:
    raise RuntimeError(message)


class UnitSink:
    """Packed sequences written as MDS units while they are packed, one unit per (directory,
    bucket): the task that packs a bucket writes and commits its shards, so no copy of the
    tokens passes through Spark."""

    def __init__(self, spec: MdsSpec, directories: dict[tuple[str, int], str], attempt: int):
        self.spec = spec
        self.directories = directories
        self.attempt = attempt
        self.units: dict[tuple[str, int], UnitWriter] = {}

    def write(self, key: tuple[str, int], bucket: int, sequence: Any) -> None:
        directory = self.directories[key]
        unit = self.units.get((directory, bucket))
        if unit is None:
            unit = self.units[(directory, bucket)] = UnitWriter(
                self.spec, directory, bucket, self.attempt
            )
        sample = {
            "input_ids": sequence.input_ids,
            "indices": sequence.indices,
            "domain": key[0],
            "length": len(sequence.input_ids),
        }
        if sequence.mask is not None:
            sample["mask"] = sequence.mask
        unit.write(sample)

    def commit(self) -> list[dict[str, Any]]:
        """Every open unit committed (units are closed with their bucket); their records."""
        units, self.units = self.units, {}
        return [unit.commit() for _, unit in sorted(units.items())]


def unit_sequences(batches: Iterable[pa.RecordBatch], spec: MdsSpec) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over COMMIT_SCHEMA rows: each committed unit's samples read back from
    its shards, as SEQUENCE_SCHEMA `sequence` rows numbered by their place in the unit (the
    packer's `seq_no`: a unit holds its bucket's sequences in order)."""
    out = RowBuffer(None)
    for batch in batches:
        for row in batch.to_pylist():
            record = json.loads(row["record"])
            folder = join(spec.root, record["directory"], record["folder"])
            seq_no = 0
            for shard in record["shards"]:
                name = (shard["zip_data"] or shard["raw_data"])["basename"]
                with open_input(join(folder, name), spec.storage) as stream:
                    data = raw_shard(stream.read(), shard)
                for sample in shard_samples(data, shard):
                    key = (sample["domain"], int(sample["length"]))
                    sequence = Sequence(
                        sample["input_ids"],
                        sample["indices"].astype(np.int64),
                        sample["mask"].astype(np.int8) if "mask" in sample else None,
                    )
                    yield from out.add("sequence", key, record["bucket"], seq_no, sequence)
                    seq_no += 1
    yield from out.pending()


def encode(sample: dict[str, Any], spec: MdsSpec) -> dict[str, Any]:
    out = dict(sample)
    out["indices"] = sample["indices"].astype(spec.indices_dtype)
    if "mask" in sample:
        out["mask"] = sample["mask"].astype(np.uint8)
    return out


def clear_stale(spec: MdsSpec) -> bool:
    """Delete the shards and commits an earlier run with another config left in this output,
    so that a resumed run never mixes two configs' samples. True if there were any."""
    records = committed(spec)
    # Records without `shards` come from a longmix that merged the units' own index files.
    if all(r.get("digest") == spec.digest and "shards" in r for r in records.values()):
        return False
    folders = recorded_attempts(spec)
    for directory, bucket in records:
        folders.setdefault(directory, set()).add(records[(directory, bucket)]["folder"])
    for directory, names in sorted(folders.items()):
        for name in sorted(names):
            delete_folder(join(spec.root, directory, name), spec.storage)
        delete_file(join(spec.root, directory, INDEX), spec.storage)
        delete_if_empty(join(spec.root, directory), spec.storage)
    delete_file(join(spec.root, PASS_MARKER), spec.storage)
    delete_folder(join(spec.root, COMMITS), spec.storage)
    delete_folder(join(spec.root, ATTEMPTS), spec.storage)
    return True


def committed(spec: MdsSpec) -> dict[tuple[str, int], dict[str, Any]]:
    """Every unit's commit record so far (a resumed run skips these units)."""
    records = {}
    for uri in list_files(join(spec.root, COMMITS), spec.storage):
        if uri.endswith(".json"):
            record = json.loads(read_text(uri, spec.storage))
            records[(record["directory"], record["bucket"])] = record
    return records


def publish(spec: MdsSpec, records: dict[tuple[str, int], dict[str, Any]]) -> None:
    """One merged index.json per directory over its committed units, in bucket order, built
    from the commit records (no unit's index is read back), and every recorded attempt folder
    that no commit names deleted (failed, killed and speculative attempts)."""
    attempts = recorded_attempts(spec)
    for directory in sorted({d for d, _ in records}):
        units = [r for (d, _), r in sorted(records.items()) if d == directory]
        root = join(spec.root, directory)
        for folder in sorted(attempts.get(directory, set()) - {r["folder"] for r in units}):
            delete_folder(join(root, folder), spec.storage)
        index = merged_index([(r["folder"], r["shards"]) for r in units])
        write_text(join(root, INDEX), index, spec.storage)

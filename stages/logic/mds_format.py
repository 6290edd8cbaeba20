"""MDS shards and indexes, written without importing mosaicml-streaming.

Why not streaming's `MDSWriter` and `merge_index`: `import streaming` imports torch and
torchvision (3.9 s in every Python worker that writes, and a 7 GB executor environment for
a job that never trains). This module writes the same bytes as `MDSWriter` for the column
encodings longmix emits (`ndarray:<dtype>`, `str`, `int32`) with or without zstd, and the
same merged index as `merge_index`; tests/test_mds_format.py compares both byte for byte and
reads the shards back with `StreamingDataset`.

A shard: sample count (uint32), sample end offsets (uint32, count + 1), the writer's config as
JSON, then the samples; a sample: the byte sizes of its variable-size columns (uint32), then
every column's bytes, columns in name order.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import numpy as np
import zstd

INDEX = "index.json"
VERSION = 2
FIXED_SIZES = {"int32": 4}
SCALARS = {"int32": np.int32}
# An ndarray's shape is stored in the smallest of these that holds its largest dimension.
SHAPE_DTYPES = ((1 << 8, 0, np.uint8), (1 << 16, 1, np.uint16), (1 << 32, 2, np.uint32))
DEFAULT_ZSTD_LEVEL = 3
SPOOL_BYTES = 8 * 1024 * 1024


def encode_column(encoding: str, value: Any) -> bytes:
    if encoding == "str":
        return value.encode("utf-8")
    if encoding in SCALARS:
        return SCALARS[encoding](value).tobytes()
    kind, _, dtype = encoding.partition(":")
    if kind != "ndarray" or not dtype:
        raise ValueError(f"unsupported MDS column encoding {encoding!r}")
    return encode_ndarray(value, dtype)


def encode_ndarray(array: np.ndarray, dtype: str) -> bytes:
    """Static dtype, dynamic shape: one byte (ndim << 2 | shape dtype), the shape, the values."""
    if array.dtype != np.dtype(dtype):
        raise ValueError(f"wrong dtype: expected {dtype}, got {array.dtype.name}")
    if array.size == 0:
        raise ValueError("an empty array cannot be stored as an MDS ndarray")
    largest = max(array.shape)
    code, shape_dtype = next((c, t) for limit, c, t in SHAPE_DTYPES if largest < limit)
    head = bytes([(array.ndim << 2) | code]) + np.array(array.shape, shape_dtype).tobytes()
    return head + np.ascontiguousarray(array).tobytes()


def decode_column(encoding: str, data: memoryview) -> Any:
    if encoding == "str":
        return bytes(data).decode("utf-8")
    if encoding in SCALARS:
        return SCALARS[encoding](np.frombuffer(data, SCALARS[encoding])[0])
    _, _, dtype = encoding.partition(":")
    head = data[0]
    ndim, code = head >> 2, head & 3
    shape_dtype = next(t for _, c, t in SHAPE_DTYPES if c == code)
    shape = np.frombuffer(data, shape_dtype, ndim, offset=1)
    values = np.frombuffer(data, dtype, offset=1 + shape.nbytes)
    return values.reshape(tuple(int(n) for n in shape))


def shard_samples(data: bytes, shard: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples of one shard's raw (uncompressed) bytes, read with its index entry;
    arrays are views into `data`."""
    data = memoryview(data)
    count = int(np.frombuffer(data, np.uint32, 1)[0])
    offsets = np.frombuffer(data, np.uint32, count + 1, offset=4)
    columns = list(
        zip(shard["column_names"], shard["column_encodings"], shard["column_sizes"], strict=True)
    )
    variable = sum(size is None for _, _, size in columns)
    samples = []
    for begin in offsets[:-1].tolist():
        sizes = iter(np.frombuffer(data, np.uint32, variable, offset=begin).tolist())
        position = begin + 4 * variable
        sample = {}
        for name, encoding, size in columns:
            size = next(sizes) if size is None else size
            sample[name] = decode_column(encoding, data[position : position + size])
            position += size
        samples.append(sample)
    return samples


def raw_shard(data: bytes, shard: dict[str, Any]) -> bytes:
    """A shard file's bytes as written, decompressed if its index entry says so."""
    return zstd.decompress(data) if shard.get("zip_data") else data


class ShardWriter:
    """`MDSWriter(out=folder, columns, compression, hashes=["sha1"], size_limit)` for a local
    folder: the same shard names, bytes, split points and index.json."""

    def __init__(
        self, folder: str, columns: dict[str, str], compression: str | None, size_limit: int
    ) -> None:
        self.folder = folder
        self.names = sorted(columns)
        self.encodings = [columns[name] for name in self.names]
        self.compression = compression or None
        self.level = zstd_level(self.compression)
        self.config = {
            "version": VERSION,
            "format": "mds",
            "compression": self.compression,
            "hashes": ["sha1"],
            "size_limit": size_limit,
            "column_names": self.names,
            "column_encodings": self.encodings,
            "column_sizes": [FIXED_SIZES.get(e) for e in self.encodings],
        }
        self.config_data = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self.size_limit = size_limit
        self.shards: list[dict[str, Any]] = []
        self.sizes: list[int] = []
        # A task packing a bucket keeps a writer open per output directory: samples wait in
        # a spooled file, not in memory, until their shard is written.
        self.body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (finish)
        self.size = self.empty_size()
        os.makedirs(folder, exist_ok=True)

    def empty_size(self) -> int:
        return 4 + 4 + len(self.config_data)

    def write(self, sample: dict[str, Any]) -> None:
        data = self.encode(sample)
        # As MDSWriter: 4 bytes of offset per sample, and a shard flushed (even an empty one)
        # before the sample that would take it past the limit.
        if self.size_limit and self.size_limit < self.size + len(data) + 4:
            self.flush()
        self.body.write(data)
        self.sizes.append(len(data))
        self.size += len(data) + 4

    def encode(self, sample: dict[str, Any]) -> bytes:
        parts = [
            encode_column(e, sample[n]) for n, e in zip(self.names, self.encodings, strict=True)
        ]
        sizes = [
            len(part) for part, e in zip(parts, self.encodings, strict=True) if e not in FIXED_SIZES
        ]
        return np.array(sizes, np.uint32).tobytes() + b"".join(parts)

    def flush(self) -> None:
        sizes = self.sizes
        offsets = np.array([0, *sizes]).cumsum().astype(np.uint32)
        offsets += 4 + offsets.nbytes + len(self.config_data)
        self.body.seek(0)
        head = [np.uint32(len(sizes)).tobytes(), offsets.tobytes(), self.config_data]
        raw = b"".join([*head, self.body.read()])
        raw_name = f"shard.{len(self.shards):05}.mds"
        shard = {"samples": len(sizes), "raw_data": file_info(raw, raw_name), "zip_data": None}
        data, name = raw, raw_name
        if self.compression:
            data, name = zstd.compress(raw, self.level), f"{raw_name}.zstd"
            shard["zip_data"] = file_info(data, name)
        with open(os.path.join(self.folder, name), "wb") as out:
            out.write(data)
        self.shards.append({**shard, **self.config})
        self.sizes = []
        self.body.seek(0)
        self.body.truncate()
        self.size = self.empty_size()

    def finish(self) -> list[dict[str, Any]]:
        """The last shard and the index written; the index's shard entries."""
        if self.sizes:
            self.flush()
        self.body.close()
        with open(os.path.join(self.folder, INDEX), "w") as out:
            json.dump({"version": VERSION, "shards": self.shards}, out, sort_keys=True)
        return json.loads(json.dumps(self.shards, sort_keys=True))


def zstd_level(compression: str | None) -> int:
    if compression is None:
        return 0
    name, _, level = compression.partition(":")
    if name != "zstd":
        raise ValueError(f"unsupported MDS compression {compression!r} (zstd or none)")
    return int(level) if level else DEFAULT_ZSTD_LEVEL


def file_info(data: bytes, basename: str) -> dict[str, Any]:
    return {
        "basename": basename,
        "bytes": len(data),
        "hashes": {"sha1": hashlib.sha1(data).hexdigest()},
    }


def merged_index(units: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """merge_index's index.json over (folder, shard entries) units, in the order given: every
    shard's file names prefixed with its folder."""
    shards = []
    for folder, entries in units:
        for entry in entries:
            shard = dict(entry)
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key] = {**shard[key], "basename": f"{folder}/{shard[key]['basename']}"}
            shards.append(shard)
    return json.dumps({"version": VERSION, "shards": shards})

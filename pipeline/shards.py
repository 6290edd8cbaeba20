"""Reading an MDS output's shards back: each shard through mosaicml-streaming's own reader
(after checking its sha1 and unpacking it), and an S3 output downloaded to read it locally.
Used by `validate`, `stats` and the smoke trainer; never by `prepare` (streaming imports
torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from longmix.stages.logic.storage import StorageOptions, list_files, resolve


def download(uri: str, local: Path, storage: StorageOptions) -> None:
    fs, _ = resolve(uri, storage)
    for remote in list_files(uri, storage):
        relative = remote[len(uri.rstrip("/")) + 1 :]
        if relative.startswith("_work/"):
            continue
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_file(remote[len("s3://") :]) as stream:
            target.write_bytes(stream.read())


def shard_reader(folder: Path, shard: dict, scratch: Path) -> tuple[Any, tuple[str, str] | None]:
    """streaming's reader of one shard (a compressed one unpacked into `scratch`), or the
    reason it cannot be read."""
    from streaming.base.format import reader_from_json

    problem = shard_problem(folder, shard, scratch)
    if problem:
        return None, problem
    base = scratch if shard.get("zip_data") else folder
    return reader_from_json(str(base), None, shard), None


def shard_problem(folder: Path, shard: dict, scratch: Path) -> tuple[str, str] | None:
    """A missing or corrupted shard file; a compressed shard is unpacked into `scratch`."""
    from streaming.base.compression import decompress

    stored = shard.get("zip_data") or shard["raw_data"]
    path = folder / stored["basename"]
    if not path.exists():
        return "missing_shard", f"{path} does not exist"
    data = path.read_bytes()
    expected = stored.get("hashes", {}).get("sha1")
    if expected and hashlib.sha1(data).hexdigest() != expected:
        return "corrupted_shard", f"sha1 of {path} differs from index.json"
    if shard.get("zip_data"):
        raw = scratch / shard["raw_data"]["basename"]
        raw.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw.write_bytes(decompress(shard["compression"], data))
        except Exception as exc:
            return "corrupted_shard", f"{path} does not decompress: {exc!r}"[:200]
    return None

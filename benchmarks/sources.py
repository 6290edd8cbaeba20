"""Benchmark corpora: real Python source of the installed packages, in the Stack layout."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from longmix.pipeline import corpus


def package_sources(total_bytes: int) -> Iterator[tuple[str, str]]:
    """(path under site-packages, text) of non-empty .py files until `total_bytes` of text."""
    root = Path(sysconfig.get_paths()["purelib"])
    seen = 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        yield path.relative_to(root).as_posix(), text
        seen += len(text.encode("utf-8"))
        if seen >= total_bytes:
            return


def write_stack_corpus(
    folder: Path, total_bytes: int, repository: Callable[[str], str], shards: int
) -> int:
    """Stack parquet files under `folder/data/python`, rows dealt round-robin in batches so
    each repository spans many files; streamed, so the corpus never sits in memory. Where the
    installed packages hold less than `total_bytes`, they are written again as renamed
    repositories (`<repository>-copy<k>`)."""
    (folder / "data/python").mkdir(parents=True, exist_ok=True)
    writers = [
        pq.ParquetWriter(
            folder / f"data/python/train-{k:05d}-of-{shards:05d}.parquet", corpus.STACK_SCHEMA
        )
        for k in range(shards)
    ]
    written, batch, batches, copy = 0, [], 0, 0
    while written < total_bytes:
        before = written
        for path, text in package_sources(total_bytes - written):
            name = repository(path) + (f"-copy{copy}" if copy else "")
            batch.append(corpus.stack_row(name, path, text))
            written += len(text.encode("utf-8"))
            if len(batch) == 200:
                table = pa.Table.from_pylist(batch, corpus.STACK_SCHEMA)
                writers[batches % shards].write_table(table)
                batch, batches = [], batches + 1
        if written == before:
            break
        copy += 1
    if batch:
        writers[batches % shards].write_table(pa.Table.from_pylist(batch, corpus.STACK_SCHEMA))
    for writer in writers:
        writer.close()
    return written

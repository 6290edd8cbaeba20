"""The run's inputs on the driver: the source files (names and sizes only, never their text)
and the evaluation texts to decontaminate against (read whole: they are small)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from itertools import islice
from typing import IO

import pyarrow.parquet as pq

from longmix.pipeline.config import Config
from longmix.pipeline.specs import source_specs, storage_options
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.fingerprints import NGramIndex
from longmix.stages.logic.read import ReadTask
from longmix.stages.logic.readers import (
    DATA_SUFFIXES,
    Skip,
    chunks_for,
    guess_format,
    read_file,
    record_unit,
    split_lines,
)
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.storage import FileEntry, StorageOptions, expand, open_input


def discover(config: Config) -> list[ReadTask]:
    """Every input file of every source.

    A file's `relative` name (which document ids carry) is its path under the deepest folder
    shared by all files of its source: unique within the source, and the same for the same
    layout on local disk and on S3."""
    storage = storage_options(config)
    specs = source_specs(config)
    tasks = []
    for name, source in config.sources.items():
        suffixes = DATA_SUFFIXES.get(specs[name].format)
        entries = {}
        for pattern in source.paths():
            found = expand(config.resolve(pattern), storage)
            if suffixes:
                found = [e for e in found if e.uri.endswith(suffixes)]
            if not found:
                raise LongmixError(f"source {name!r}: no files match {config.resolve(pattern)}")
            entries.update({entry.uri: entry for entry in found})
        common = common_folder(list(entries))
        tasks += [
            ReadTask(
                name, uri, uri[len(common) :].lstrip("/"), entry.size, entry.modified, entry.stamp
            )
            for uri, entry in sorted(entries.items())
        ]
    return tasks


def common_folder(uris: list[str]) -> str:
    parts = [uri.split("/")[:-1] for uri in uris]
    shared = parts[0]
    for other in parts[1:]:
        size = next(
            (i for i, (a, b) in enumerate(zip(shared, other, strict=False)) if a != b), None
        )
        shared = shared[: min(len(shared), len(other)) if size is None else size]
    return "/".join(shared)


def evaluation_index(config: Config) -> NGramIndex | None:
    """The word n-grams of the evaluation texts named by `decontaminate.paths` (None when it
    names none), built once on the driver; files are named relative to their common folder."""
    settings = config.decontaminate
    if not settings.paths:
        return None
    storage = storage_options(config)
    entries = {entry.uri: entry for entry in evaluation_files(config)}
    common = common_folder(list(entries)) if len(entries) > 1 else ""
    named = {uri: uri[len(common) :].lstrip("/") or uri.rsplit("/", 1)[-1] for uri in entries}
    texts = (
        (named[uri], text)
        for uri in sorted(entries)
        for text in evaluation_texts(uri, settings.field, storage)
    )
    return NGramIndex.build(texts, settings.ngram)


def evaluation_files(config: Config) -> list[FileEntry]:
    """Every file `decontaminate.paths` names, by URI; a pattern that matches none is an
    error."""
    storage = storage_options(config)
    entries: dict[str, FileEntry] = {}
    for pattern in config.decontaminate.paths:
        found = expand(config.resolve(pattern), storage)
        if not found:
            raise LongmixError(f"decontaminate.paths: no files match {pattern}")
        entries.update({entry.uri: entry for entry in found})
    return [entries[uri] for uri in sorted(entries)]


def evaluation_texts(uri: str, column: str, storage: StorageOptions) -> Iterator[str]:
    """The texts of one evaluation file: a JSONL key or parquet column, else the whole file."""
    name = uri.removesuffix(".gz").removesuffix(".zst").removesuffix(".zstd")
    with open_input(uri, storage) as raw:
        if name.endswith(".parquet"):
            table = pq.read_table(raw)
            if column not in table.column_names:
                raise LongmixError(f"{uri}: no column {column!r} (decontaminate.field)")
            yield from (t for t in table.column(column).to_pylist() if isinstance(t, str))
        elif name.endswith((".jsonl", ".json")):
            yield from jsonl_texts(uri, raw, column)
        else:
            yield b"".join(chunks_for(uri, raw)).decode("utf-8", "replace")


def jsonl_texts(uri: str, raw: IO[bytes], column: str) -> Iterator[str]:
    for line_no, line in enumerate(split_lines(chunks_for(uri, raw)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise LongmixError(f"{uri}, line {line_no}: not JSON ({exc})") from None
        text = record.get(column) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise LongmixError(
                f"{uri}, line {line_no}: no text in {column!r} (decontaminate.field)"
            )
        yield text


SNIFF_RECORDS = 100  # records read from a file before it counts as yielding no document
SNIFF_FILES = 5  # files of a source tried, in order, for one that yields a document


def check_first_files(config: Config, tasks: list[ReadTask]) -> None:
    """Each source yields a document among the first records of one of its first non-empty
    files, or the run stops here, before anything is written, with one line naming the
    source, the first file and why, and the format its bytes look like when that is not the
    source's. (Bad files among good ones are counted by the run as usual.)"""
    storage = storage_options(config)
    specs = source_specs(config)
    opener = partial(open_input, options=storage)
    for name in config.sources:
        files = [t for t in tasks if t.source == name and t.size > 0]
        if not files:
            raise LongmixError(f"source {name!r}: every file is empty")
        spec = specs[name]
        problems = [first_problem(spec, task, opener) for task in files[:SNIFF_FILES]]
        if all(problems) and any(p is not None and p.bad for p in problems):
            preset = config.sources[name].preset
            line = no_document(name, preset, spec, problems[0], storage)
            if len(problems) > 1:
                line += f" (and so do the next {len(problems) - 1} files)"
            raise LongmixError(line)


def first_problem(spec: SourceSpec, task: ReadTask, opener) -> Skip | None:
    """None if the file yields a document among its first records, else its first bad skip
    (or its first skip, if none is bad)."""
    skips = []
    for item in islice(read_file(spec, task.uri, task.relative, opener), SNIFF_RECORDS):
        if not isinstance(item, Skip):
            return None
        skips.append(item)
    bad = [skip for skip in skips if skip.bad]
    return (bad or skips or [Skip(spec.name, task.uri, None, "no_record", bad=False)])[0]


def no_document(
    name: str, preset: str | None, spec: SourceSpec, skip: Skip, storage: StorageOptions
) -> str:
    detail = f" ({skip.detail})" if skip.detail else ""
    where = skip.file if skip.record is None else f"{skip.file}, {record_unit(spec)} {skip.record}"
    line = f"source {name!r} yields no document from {where}: {skip.reason}{detail}"
    guess = head_format(skip.file, storage)
    if guess and guess != spec.format:
        reads = f"preset {preset} reads {spec.format}" if preset else f"format is {spec.format}"
        fix = "leave preset out and set" if preset else "set"
        line += f"; its bytes look like {guess}, but its {reads}: {fix} format: {guess}"
    return line


def head_format(uri: str, storage: StorageOptions) -> str | None:
    """The format the first bytes of `uri` (decompressed) suggest; None if unreadable."""
    try:
        with open_input(uri, storage) as raw:
            head = next(chunks_for(uri, raw), b"")
    except Exception:  # a hint only: no hint when the file cannot be opened here
        return None
    return guess_format(head[:64])

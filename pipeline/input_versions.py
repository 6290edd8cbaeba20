"""The version of every file a run reads, which with the config makes the run what it is.

When a run starts, every input is listed with its size and a stamp that changes when the
file is rewritten: the source files, the files of a local tokenizer (a `transformers` folder,
a `.tiktoken` file) and the evaluation texts of `decontaminate`. The stamp is the modification
time in nanoseconds locally and the ETag on S3; with `run.inputs_check: content` it is a
sha256 of the bytes, for file systems whose times cannot be trusted. The listing is written
beside the output (`_inputs.tsv`, owned here) and its digest joins the config digest wherever
the driver decides what an earlier run left is still good for: a finished output, a finished
packing pass, committed MDS units. So an output whose inputs changed is written again, and a
resumed run never keeps units made from another version of its inputs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from longmix.pipeline.config import Config
from longmix.pipeline.inputs import evaluation_files
from longmix.pipeline.specs import storage_options
from longmix.stages.logic.read import ReadTask
from longmix.stages.logic.storage import (
    FileEntry,
    StorageOptions,
    exists,
    expand,
    file_version,
    is_s3,
    join,
    open_input,
    read_text,
    write_text,
)

INPUTS_FILE = "_inputs.tsv"
HEADER = "role\turi\tbytes\tmodified\tstamp"
CONTENT = "sha256:"
HASH_CHUNK = 8 * 1024 * 1024
HASH_THREADS = 8


@dataclass(frozen=True)
class InputVersion:
    """One input file as a run found it. `role`: `source <name>`, `tokenizer` or
    `evaluation`; `modified` (UTC, ISO 8601) is for people, `stamp` for comparison."""

    role: str
    uri: str
    size: int
    modified: str
    stamp: str

    def line(self) -> str:
        return "\t".join((self.role, self.uri, str(self.size), self.modified, self.stamp))


def current_versions(config: Config, tasks: list[ReadTask]) -> list[InputVersion]:
    """Every input of the run as it is now: the discovered source files, the tokenizer's
    files (for runs that tokenize) and the evaluation files, by URI within each role."""
    storage = storage_options(config)
    found = [InputVersion(f"source {t.source}", t.uri, t.size, t.modified, t.stamp) for t in tasks]
    if config.run.until != "documents":  # documents are not tokenized
        found += [version("tokenizer", e) for e in tokenizer_files(config, storage)]
    found += [version("evaluation", e) for e in evaluation_files(config)]
    if config.run.inputs_check == "content":
        found = by_content(found, storage)
    return found


def version(role: str, entry: FileEntry) -> InputVersion:
    return InputVersion(role, entry.uri, entry.size, entry.modified, entry.stamp)


def tokenizer_files(config: Config, storage: StorageOptions) -> list[FileEntry]:
    """The files of a tokenizer named by a local path (a folder or a file); none for an
    encoding named by its name, whose vocabulary ships with a package."""
    name = config.tokenizer.name
    if is_s3(name) or not os.path.exists(name):
        return []
    return expand(os.path.abspath(name), storage)


def by_content(versions: list[InputVersion], storage: StorageOptions) -> list[InputVersion]:
    """The versions stamped by a sha256 of their bytes (files hashed on threads)."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        hashes = list(pool.map(lambda v: content_hash(v.uri, storage), versions))
    return [replace(v, stamp=CONTENT + h) for v, h in zip(versions, hashes, strict=True)]


def content_hash(uri: str, storage: StorageOptions) -> str:
    digest = hashlib.sha256()
    with open_input(uri, storage) as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_tasks_checked(tasks: list[ReadTask], config: Config) -> list[ReadTask]:
    """The read tasks with the stamps a task compares when it opens a file: none (the size
    alone) when times cannot be trusted."""
    if config.run.inputs_check == "content":
        return [replace(t, stamp="") for t in tasks]
    return tasks


def versions_digest(versions: Iterable[InputVersion]) -> str:
    """sha256 of what identifies the inputs: role, URI, size and stamp of each."""
    lines = sorted(f"{v.role}\t{v.uri}\t{v.size}\t{v.stamp}" for v in versions)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def with_inputs(digest: str, inputs_digest: str) -> str:
    """A config digest joined with the inputs' digest: what a run's products depend on."""
    return hashlib.sha256(f"{digest}\n{inputs_digest}".encode()).hexdigest()


def write_versions(output: str, versions: list[InputVersion], storage: StorageOptions) -> None:
    body = "".join(v.line() + "\n" for v in versions)
    write_text(join(output, INPUTS_FILE), HEADER + "\n" + body, storage)


def recorded_versions(output: str, storage: StorageOptions) -> list[InputVersion] | None:
    """The inputs listed beside `output` by the run that wrote it (None: no listing). A
    listing of an older longmix (uri, bytes, modified) has no roles or stamps."""
    uri = join(output, INPUTS_FILE)
    if not exists(uri, storage):
        return None
    lines = read_text(uri, storage).splitlines()
    if not lines:
        return []
    rows = [line.split("\t") for line in lines[1:]]
    if lines[0] != HEADER:
        return [InputVersion("", uri, int(size), modified, "") for uri, size, modified in rows]
    return [InputVersion(role, u, int(n), m, stamp) for role, u, n, m, stamp in rows]


def first_change(before: list[InputVersion], now: list[InputVersion]) -> str | None:
    """The first difference between two listings, in URI order, said in a few words:
    `<file>: size 199098 -> 204607`, `... rewritten (modified ... -> ...)`, `new file`,
    `removed`; None if they are the same."""
    old = {v.uri: v for v in before}
    new = {v.uri: v for v in now}
    for uri in sorted(old.keys() | new.keys()):
        change = difference(old.get(uri), new.get(uri))
        if change:
            return f"{uri}: {change}"
    return None


def difference(old: InputVersion | None, new: InputVersion | None) -> str | None:
    if old is None:
        return f"new {new.role} file" if new and new.role else "new file"
    if new is None:
        return "removed"
    if old.size != new.size:
        return f"size {old.size} -> {new.size}"
    if old.stamp != new.stamp:
        if not old.stamp:
            return "no version recorded (written by an older longmix)"
        if old.modified != new.modified:
            return f"rewritten (modified {old.modified} -> {new.modified})"
        return "rewritten (same size and second, another " + stamp_kind(new) + ")"
    if old.role != new.role:
        return f"now read as {new.role}, was {old.role or 'unknown'}"
    return None


def stamp_kind(version: InputVersion) -> str:
    if version.stamp.startswith(CONTENT):
        return "content hash"
    return "ETag" if is_s3(version.uri) else "modification time"


def stale_versions(versions: list[InputVersion], storage: StorageOptions) -> list[str]:
    """Each recorded input whose file at its path is no longer that version: by size, and by
    stamp where it is a time or an ETag (`validate` does not hash terabytes again)."""
    out = []
    for recorded in versions:
        now = file_version(recorded.uri, storage)
        if now is None:
            out.append(f"{recorded.uri}: removed")
        elif now[0] != recorded.size:
            out.append(f"{recorded.uri}: size {recorded.size} -> {now[0]}")
        elif recorded.stamp and not recorded.stamp.startswith(CONTENT) and now[1] != recorded.stamp:
            out.append(f"{recorded.uri}: rewritten (another {stamp_kind(recorded)})")
    return out

"""longmix owns only what it wrote.

An output (and a scratch folder) must be absent, empty, or already a longmix output, which
`_longmix.json` marks; anything else is refused before Spark starts, because a run writes and
replaces files in a folder it owns (and deletes what its own records name). Inputs and outputs
may not overlap, and the data card replaces a README only if longmix wrote it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.fs as pafs

from longmix.pipeline import __version__
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import (
    StorageOptions,
    exists,
    glob_regex,
    join,
    resolve,
    split_pattern,
    write_text,
)

MARKER = "_longmix.json"
# The first line of every card longmix writes after its front matter: what makes a README.md
# one longmix may replace.
CARD_MARK = "<!-- written by longmix: a data card, rewritten on every run -->"


def is_longmix_output(uri: str, storage: StorageOptions) -> bool:
    return exists(join(uri, MARKER), storage)


def first_entries(uri: str, storage: StorageOptions, limit: int = 3) -> list[str] | None:
    """Up to `limit` names directly inside `uri`; None if it does not exist."""
    fs, path = resolve(uri, storage)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    if info.type == pafs.FileType.File:
        return [info.base_name]
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in found)[:limit]


def refuse_foreign_folder(uri: str, storage: StorageOptions, what: str) -> None:
    """`uri` must be absent, empty, or marked as longmix's."""
    if is_longmix_output(uri, storage):
        return
    entries = first_entries(uri, storage)
    if entries:
        shown = ", ".join(entries)
        raise LongmixError(
            f"{what} {uri} holds files longmix did not write ({shown}...); give a new or empty "
            "folder, or the output of an earlier longmix run"
        )


def claim_folder(uri: str, storage: StorageOptions, what: str) -> None:
    """Make `uri` a longmix folder, or refuse: it must be absent, empty, or marked."""
    if is_longmix_output(uri, storage):
        return
    refuse_foreign_folder(uri, storage, what)
    marker = {"written_by": f"longmix {__version__}", "created": time.time()}
    write_text(join(uri, MARKER), json.dumps(marker) + "\n", storage)


def normalized(uri: str) -> str:
    if "://" in uri:  # s3:// (and hdfs:// and the like) as written
        return uri.rstrip("/")
    return os.path.realpath(uri).rstrip("/") or "/"


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def refuse_overlap(inputs: dict[str, list[str]], outputs: dict[str, str]) -> None:
    """No input may lie inside an output (a run would delete or read its own files), and no
    output where an input's glob could reach (a run would read what it wrote)."""
    for name, patterns in inputs.items():
        for pattern in patterns:
            for what, uri in outputs.items():
                if overlap(pattern, uri):
                    raise LongmixError(
                        f"source {name!r} ({pattern}) and {what} {uri} overlap: keep inputs "
                        "and outputs in separate folders"
                    )


def overlap(pattern: str, output: str) -> bool:
    base, glob = split_pattern(pattern)
    base, out = normalized(base or "/"), normalized(output)
    if inside(base, out):
        return True
    if not inside(out, base):
        return False
    if glob is None or "**" in glob:
        return True
    first = out[len(base) :].lstrip("/").split("/")[0]
    return bool(glob_regex(glob.split("/")[0]).match(first))


def refuse_foreign_card(path: Path) -> None:
    """A README.md where a card goes must be absent or a card longmix wrote."""
    if path.exists() and CARD_MARK not in path.read_text(errors="replace"):
        raise LongmixError(
            f"{path} exists and longmix did not write it; not replacing it with the data card "
            "(move it, or set run.cards to another folder)"
        )


def write_owned_text(path: Path, text: str) -> None:
    refuse_foreign_card(path)
    write_text(str(path), text, StorageOptions())

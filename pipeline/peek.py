"""`longmix peek OUTPUT[/DIR]`: one sample of a local output decoded with the output's own
tokenizer, cut at its document boundaries (`indices`), with what `mask` trains on marked."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from longmix.pipeline.mixfile import MIX_FILE
from longmix.pipeline.report import output_tokenizer
from longmix.pipeline.shards import shard_reader
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.tokenizers import Tokenizer

# Around trained text where colours cannot show it (a file, a pipe).
TRAINED_MARKS = ("«", "»")


@dataclass(frozen=True)
class Piece:
    """A run of tokens inside one document, trained on or not."""

    text: str
    trained: bool


@dataclass(frozen=True)
class Peeked:
    directory: str
    sample: int
    domain: str
    length: int
    documents: list[list[Piece]]  # one list per `indices` row, in order
    masked: bool  # False: the sample has no `mask`, every token is trained

    def to_json(self) -> str:
        return json.dumps(
            {
                "directory": self.directory,
                "sample": self.sample,
                "domain": self.domain,
                "length": self.length,
                "masked": self.masked,
                "documents": [
                    {"text": "".join(p.text for p in pieces), "pieces": [vars(p) for p in pieces]}
                    for pieces in self.documents
                ],
            },
            indent=1,
            ensure_ascii=False,
        )


def find_output(path: Path) -> tuple[Path, str | None]:
    """(the output folder, a directory in it or None) for `OUTPUT` or `OUTPUT/DIR`."""
    if (path / MIX_FILE).exists():
        return path, None
    if (path.parent / MIX_FILE).exists() and (path / "index.json").exists():
        return path.parent, path.name
    raise LongmixError(f"{path} is neither a longmix output (no {MIX_FILE}) nor a directory of one")


def peek(path: Path, sample: int = 0) -> Peeked:
    """Sample `sample` (in index order) of the directory, or of the output's first directory."""
    output, directory = find_output(path)
    directories = list(yaml.safe_load((output / MIX_FILE).read_text())["domains"])
    directory = directory or directories[0]
    folder = output / directory
    shards = json.loads((folder / "index.json").read_text())["shards"]
    total = sum(s["samples"] for s in shards)
    if not 0 <= sample < total:
        raise LongmixError(f"{directory} holds samples 0 to {total - 1}; --sample {sample}")
    within = sample
    for shard in shards:
        if within < shard["samples"]:
            break
        within -= shard["samples"]
    with tempfile.TemporaryDirectory(prefix="longmix-peek-") as scratch:
        reader, problem = shard_reader(folder, shard, Path(scratch))
        if problem:
            raise LongmixError(f"{folder}: {problem[0]}: {problem[1]}")
        item = reader.get_item(within)
    return decoded(directory, sample, item, output_tokenizer(str(output)))


def decoded(directory: str, sample: int, item: dict[str, Any], tokenizer: Tokenizer) -> Peeked:
    ids = np.asarray(item["input_ids"])
    mask = np.asarray(item["mask"]) if "mask" in item else None
    documents = []
    for start, end in np.asarray(item["indices"]).reshape(-1, 2):
        documents.append(
            pieces(ids[start:end], None if mask is None else mask[start:end], tokenizer)
        )
    domain, length = str(item["domain"]), int(item["length"])
    return Peeked(directory, sample, domain, length, documents, masked=mask is not None)


def pieces(ids: np.ndarray, mask: np.ndarray | None, tokenizer: Tokenizer) -> list[Piece]:
    """A document's tokens decoded in runs of equal mask (the whole document, trained, when
    the sample has no mask)."""
    if mask is None or not len(ids):
        return [Piece(tokenizer.decode(ids.tolist()), mask is None)]
    cuts = np.flatnonzero(np.diff(mask)) + 1
    bounds = [0, *cuts.tolist(), len(ids)]
    return [Piece(tokenizer.decode(ids[a:b].tolist()), bool(mask[a])) for a, b in pairwise(bounds)]


def plain_lines(peeked: Peeked) -> list[str]:
    """The sample for a file or a pipe: a header line per document; where a `mask` says what
    is trained, trained text in marks."""
    left, right = TRAINED_MARKS
    lines = [
        f"{peeked.directory}, sample {peeked.sample}: domain {peeked.domain}, "
        f"{peeked.length:,} tokens, {len(peeked.documents)} documents; "
        + (f"trained text between {left} and {right}" if peeked.masked else "no mask: all trained")
    ]
    for number, document in enumerate(peeked.documents, start=1):
        lines.append(f"──── document {number} of {len(peeked.documents)} ────")
        lines.append(
            "".join(
                f"{left}{p.text}{right}" if p.trained and peeked.masked else p.text
                for p in document
            )
        )
    return lines

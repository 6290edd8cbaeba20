"""Packing token streams into exact-length training sequences with document `indices`.

Long data: each document of at least `min_length` tokens is cut into chunks of exactly L,
one document per sequence; the tail is dropped. Short data: documents are concatenated in
the given (seeded) order and the truncated part of the last one starts the next sequence.
SFT: the same, but the truncated part is discarded. Every document is wrapped in BOS / EOS
as configured. Work runs per bucket (a fixed, seeded share of the documents), so what a
sequence holds does not depend on Spark's partitioning; each bucket's last, partial sequence
is handed on and packed with the others (`leftovers.leftover_partition`), so a whole run
loses at most one partial sequence per (domain, length).

Every token is accounted for: input tokens + added special tokens = output tokens + drops.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Mode = Literal["long", "short", "sft"]

Method = Literal["concat", "bfd"]

DEFAULT_WINDOW_TOKENS = 16 * 1024 * 1024


def carries_mask(mode: Mode, method: Method) -> bool:
    """Whether a packer's sequences carry `mask` (and so their MDS directory a mask column)."""
    return mode == "sft" or method == "bfd"


@dataclass(frozen=True)
class PackSpec:
    mode: Mode
    length: int
    min_length: int = 0
    bos: int | None = None
    eos: int | None = None
    method: Method = "concat"  # short data: concatenate in order, or best-fit-decreasing
    window_tokens: int = DEFAULT_WINDOW_TOKENS  # bfd: tokens placed together

    @property
    def pad(self) -> int:
        return self.eos if self.eos is not None else 0

    @property
    def carries_mask(self) -> bool:
        """SFT masks what is not a response; best-fit masks its padding."""
        return carries_mask(self.mode, self.method)


@dataclass
class Sequence:
    input_ids: np.ndarray
    indices: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class Piece:
    """A document, or what is left of one, on its way into sequences."""

    ids: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class Drops:
    """Tokens (and documents) left out, by reason, and special tokens added."""

    tokens: Counter = field(default_factory=Counter)
    documents: Counter = field(default_factory=Counter)
    added_specials: int = 0
    padding: int = 0
    # Documents split across sequences, under each method (one is what happened, the other
    # what would have: the report shows both so the choice can be judged on the data).
    truncated: Counter = field(default_factory=Counter)

    def add(self, reason: str, tokens: int, documents: int = 0) -> None:
        self.tokens[reason] += tokens
        self.documents[reason] += documents


def wrap(ids: np.ndarray, mask: np.ndarray | None, spec: PackSpec, kind: str) -> Piece:
    """A tokenized document with BOS / EOS around it (chats carry their own rendering)."""
    if kind == "chat":  # rendered with its own specials; the mask matters only for SFT
        return Piece(ids.astype(np.uint32, copy=False), mask if spec.mode == "sft" else None)
    head = [spec.bos] if spec.bos is not None else []
    tail = [spec.eos] if spec.eos is not None else []
    out = np.concatenate(
        [np.array(head, np.uint32), ids.astype(np.uint32), np.array(tail, np.uint32)]
    )
    return Piece(out, np.ones(len(out), np.int8) if spec.mode == "sft" else None)


class Concatenator:
    """Fills sequences of exactly `spec.length` from pieces in order."""

    def __init__(self, spec: PackSpec, drops: Drops):
        self.spec = spec
        self.drops = drops
        self.parts: list[Piece] = []
        self.filled = 0

    def add(self, piece: Piece) -> Iterator[Sequence]:
        length = self.spec.length
        while len(piece.ids):
            take = min(length - self.filled, len(piece.ids))
            head = Piece(piece.ids[:take], None if piece.mask is None else piece.mask[:take])
            rest = Piece(piece.ids[take:], None if piece.mask is None else piece.mask[take:])
            self.parts.append(head)
            self.filled += take
            if self.filled == length:
                yield self.flush()
            if len(rest.ids) and self.spec.mode == "sft":
                self.drops.add("sft_truncated", len(rest.ids))
                return
            piece = rest

    def flush(self) -> Sequence:
        sequence = assemble(self.parts, self.spec.mode == "sft")
        self.parts, self.filled = [], 0
        return sequence

    def partial(self) -> Sequence | None:
        return assemble(self.parts, self.spec.mode == "sft") if self.parts else None


def assemble(parts: list[Piece], with_mask: bool) -> Sequence:
    ends = np.cumsum([len(p.ids) for p in parts])
    starts = np.concatenate([[0], ends[:-1]])
    mask = None
    if with_mask or any(p.mask is not None for p in parts):
        mask = np.concatenate(
            [p.mask if p.mask is not None else np.ones(len(p.ids), np.int8) for p in parts]
        )
    return Sequence(
        np.concatenate([p.ids for p in parts]),
        np.stack([starts, ends], axis=1).astype(np.int64),
        mask,
    )


def chunk_long(piece: Piece, spec: PackSpec, drops: Drops) -> Iterator[Sequence]:
    """Consecutive chunks of exactly L tokens of one long document; the tail is dropped."""
    length = spec.length
    count = len(piece.ids) // length
    for k in range(count):
        window = slice(k * length, (k + 1) * length)
        mask = None if piece.mask is None else piece.mask[window]
        yield Sequence(piece.ids[window], np.array([[0, length]], np.int64), mask)
    if len(piece.ids) - count * length:
        drops.add("long_tail", len(piece.ids) - count * length)


def pieces_of(sequence: Sequence) -> Iterator[Piece]:
    for start, end in sequence.indices:
        yield Piece(
            sequence.input_ids[start:end],
            None if sequence.mask is None else sequence.mask[start:end],
        )


class BestFit:
    """Best-fit-decreasing packing ("Fewer Truncations Improve Language Modeling", Ding et
    al. 2024) over windows of about `spec.window_tokens`: documents longer than L are cut
    into L-token chunks, the pieces of a window are placed largest first into the sequence
    with the least room that still fits them, and each sequence's free room is padded (mask
    0 on padding). No document that fits in L is ever cut."""

    def __init__(self, spec: PackSpec, drops: Drops):
        self.spec = spec
        self.drops = drops
        self.pieces: list[Piece] = []
        self.held = 0

    def add(self, piece: Piece) -> Iterator[Sequence]:
        length = self.spec.length
        for start in range(0, len(piece.ids), length):
            window = slice(start, start + length)
            ids = piece.ids[window]
            mask = np.ones(len(ids), np.int8) if piece.mask is None else piece.mask[window]
            self.pieces.append(Piece(ids, mask))
        self.held += len(piece.ids)
        if self.held >= self.spec.window_tokens:
            yield from self.close()

    def close(self) -> Iterator[Sequence]:
        """Every piece held, placed and padded."""
        length = self.spec.length
        for members in best_fit_decreasing([len(p.ids) for p in self.pieces], length):
            parts = [self.pieces[i] for i in members]
            room = length - sum(len(p.ids) for p in parts)
            if room:
                parts.append(
                    Piece(np.full(room, self.spec.pad, np.uint32), np.zeros(room, np.int8))
                )
                self.drops.padding += room
            yield assemble(parts, with_mask=True)
        self.pieces, self.held = [], 0


def best_fit_decreasing(sizes: list[int], capacity: int) -> list[list[int]]:
    """Item indices per bin, bins in order of opening. Ties keep input order, so the result
    depends only on the sizes and their order."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin) sorted: the best fit is a bisect away
    for item in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        at = bisect.bisect_left(free, (sizes[item], -1))
        if at == len(free):
            bins.append([item])
            room, index = capacity - sizes[item], len(bins) - 1
        else:
            room, index = free.pop(at)
            bins[index].append(item)
            room -= sizes[item]
        if room:
            bisect.insort(free, (room, index))
    return bins


class GroupPacker:
    """Packs one ordered stream of documents (a bucket of one domain and length)."""

    def __init__(self, spec: PackSpec, drops: Drops | None = None):
        self.spec = spec
        self.drops = drops if drops is not None else Drops()
        self.filler: Concatenator | BestFit | None = None
        if spec.mode != "long":
            fits = spec.mode == "short" and spec.method == "bfd"
            self.filler = BestFit(spec, self.drops) if fits else Concatenator(spec, self.drops)
        self.position = 0  # where the stream would stand if concatenated

    def add(
        self, kind: str, ids: np.ndarray, mask: np.ndarray | None, raw: int
    ) -> Iterator[Sequence]:
        if self.filler is None and raw < self.spec.min_length:
            self.drops.add("below_min_length", raw, 1)
            return
        piece = wrap(ids, mask, self.spec, kind)
        self.drops.added_specials += len(piece.ids) - len(ids)
        if self.filler is None:
            yield from chunk_long(piece, self.spec, self.drops)
            return
        self.count_truncation(len(piece.ids))
        yield from self.filler.add(piece)

    def count_truncation(self, size: int) -> None:
        length = self.spec.length
        self.drops.truncated["concat"] += self.position + size > length
        self.drops.truncated["bfd"] += size > length
        self.position = (self.position + size) % length

    def close(self) -> Iterator[Sequence]:
        """Sequences still held at the end of the stream (best-fit windows)."""
        if isinstance(self.filler, BestFit):
            yield from self.filler.close()

    def partial(self) -> Sequence | None:
        """The partial sequence left at the end of the stream (concatenation only)."""
        return self.filler.partial() if isinstance(self.filler, Concatenator) else None


def pack_partials(partials: Iterable[Sequence], spec: PackSpec, drops: Drops) -> Iterator[Sequence]:
    """Pack the buckets' partial sequences together; the last partial one is dropped."""
    packer = Concatenator(spec, drops)
    for partial in partials:
        for piece in pieces_of(partial):
            yield from packer.add(piece)
    final = packer.partial()
    if final is not None:
        drops.add("final_partial", len(final.input_ids), len(final.indices))

"""What a read task notes of each document for deduplication and decontamination: a hash of
its normalized text, and the evaluation files it shares a word n-gram with.

Both are computed where the text already is (the task that read it), so only 16-byte hashes
and file names travel on; the duplicate counting itself is a Spark aggregation of hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

import numpy as np
from datatrove.utils.text import TextNormConfig, simplify_text

Normalization = Literal["strip", "whitespace", "datatrove"]
HASH_BYTES = 16
# datatrove's normalization (case, numbers, punctuation, whitespace) for n-gram matching,
# without its diacritics step: that is a per-character Python loop, 3.5x the cost of the
# rest together (4.7 against 16.5 MB/s per core on source code).
NGRAM_NORMALIZATION = TextNormConfig(norm_unicode_diacritics=False)
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial hash mod 2^64 mixes well


def normalized(text: str, how: Normalization) -> str:
    """`strip`: surrounding whitespace only; `whitespace`: every run of whitespace as one
    space; `datatrove`: datatrove's full dedup normalization (case, numbers, punctuation,
    diacritics), the widest net and by far the slowest."""
    if how == "strip":
        return text.strip()
    if how == "whitespace":
        return " ".join(text.split())
    return simplify_text(text)


def text_hash(text: str, how: Normalization) -> bytes:
    data = normalized(text, how).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def words_of(text: str) -> list[str]:
    return simplify_text(text, NGRAM_NORMALIZATION).split()


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A hash of every run of `n` consecutive word ids that holds no unknown word (-1):
    a polynomial in the ids mod 2^64, built in n vectorized passes (O(words) memory)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    values = (ids + 1).astype(np.uint64)
    hashes = np.zeros(count, np.uint64)
    for k in range(n):
        hashes = hashes * MULTIPLIER + values[k : k + count]
    unknown = np.concatenate([[0], np.cumsum(ids < 0)])
    return hashes[unknown[n:] - unknown[:-n] == 0]


def contains(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    if not len(sorted_hashes):
        return np.zeros(len(hashes), bool)
    at = np.minimum(np.searchsorted(sorted_hashes, hashes), len(sorted_hashes) - 1)
    return sorted_hashes[at] == hashes


@dataclass
class NGramIndex:
    """The word n-grams of the evaluation texts, as sorted 64-bit hashes per evaluation file.

    A corpus n-gram is looked up only if every word of it occurs in some evaluation text
    (`vocabulary`), then by binary search. Two different n-grams share a hash with
    probability 2^-64 per pair: at most `n_grams / 2^64` false matches per corpus n-gram."""

    n: int
    vocabulary: dict[str, int] = field(default_factory=dict)
    files: dict[str, np.ndarray] = field(default_factory=dict)
    union: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    texts: dict[str, int] = field(default_factory=dict)
    too_short: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, texts: Iterable[tuple[str, str]], n: int) -> NGramIndex:
        """From (evaluation file, text) pairs; texts under `n` words are counted, unused."""
        index = cls(n)
        parts: dict[str, list[np.ndarray]] = {}
        for name, text in texts:
            words = words_of(text)
            index.texts[name] = index.texts.get(name, 0) + 1
            if len(words) < n:
                index.too_short[name] = index.too_short.get(name, 0) + 1
                continue
            vocabulary = index.vocabulary
            ids = [vocabulary.setdefault(word, len(vocabulary)) for word in words]
            parts.setdefault(name, []).append(window_hashes(np.array(ids, np.int64), n))
        index.files = {name: np.unique(np.concatenate(p)) for name, p in sorted(parts.items())}
        if index.files:
            index.union = np.unique(np.concatenate(list(index.files.values())))
        return index

    def matches(self, text: str) -> list[str]:
        """The evaluation files sharing at least one n-gram with `text`."""
        if not len(self.union):
            return []
        words = words_of(text)
        ids = np.fromiter(map(self.vocabulary.get, words, repeat(-1)), np.int64, len(words))
        hashes = window_hashes(ids, self.n)
        hits = hashes[contains(self.union, hashes)]
        if not len(hits):
            return []
        return [name for name, grams in self.files.items() if contains(grams, hits).any()]

    def summary(self) -> dict[str, Any]:
        return {
            "ngram_words": self.n,
            "ngrams": len(self.union),
            "false_match_rate_per_ngram": float(len(self.union)) / 2.0**64,
            "files": {
                name: {
                    "texts": count,
                    "too_short": self.too_short.get(name, 0),
                    "ngrams": len(self.files.get(name, ())),
                }
                for name, count in sorted(self.texts.items())
            },
        }


@dataclass(frozen=True)
class Fingerprints:
    """How a read task marks documents: the dedup normalization, the evaluation n-grams
    (none: no decontamination), and whether contaminated documents are left out."""

    normalize: Normalization = "strip"
    index: NGramIndex | None = None
    remove_contaminated: bool = False

    def mark(self, row: dict[str, Any]) -> dict[str, Any]:
        """A READ_SCHEMA document row with `hash` and `contaminated` set; with removal on,
        a contaminated document becomes a skipped record that still says what it matched."""
        text = row["text"]
        row["hash"] = text_hash(text, self.normalize)
        matched = self.index.matches(text) if self.index is not None else []
        row["contaminated"] = matched or None
        if matched and self.remove_contaminated:
            ngram = f"a {self.index.n}-word n-gram"
            row.update(
                text=None,
                skip_reason="contaminated",
                skip_detail=f"{row['id']} shares {ngram} with {matched[0]}",
                skip_bad=False,
                skip_records=1,
            )
        return row

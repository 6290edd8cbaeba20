"""Records to packed sequences in one pass per partition: concatenate, tokenize, pack.

The partition's rows arrive sorted by (bucket, seeded group order, member order), so each
repository or subject is contiguous and each bucket's documents come in a seeded order that
no partitioning or input order changes. One pass keeps document text, tokens and sequences
out of Spark between steps: the text crosses to the JVM once (the shuffle) and the tokens
once (the output). Each bucket ends with one `partial` row per (domain, length), packed
together afterwards (`leftover_partition`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from longmix.stages.logic.batches import rows_of
from longmix.stages.logic.concat import INPUT_COLUMNS as CONCAT_COLUMNS
from longmix.stages.logic.concat import as_binary, concatenate_rows
from longmix.stages.logic.counts import (
    READ_TALLY_COLUMNS,
    count_document,
    count_drops,
    count_record,
    packing_key,
)
from longmix.stages.logic.pack import GroupPacker, PackSpec
from longmix.stages.logic.rows import RowBuffer, SequenceSink
from longmix.stages.logic.schemas import SpecKey
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.stats import DEFAULT_THRESHOLDS, count_lengths, member_token_counts
from longmix.stages.logic.tally import Tally
from longmix.stages.logic.tokenize import encode_documents
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer

# What concatenation needs, what counting records needs, and the bucket.
INPUT_COLUMNS = list(dict.fromkeys([*CONCAT_COLUMNS, *READ_TALLY_COLUMNS, "bucket"]))


@dataclass(frozen=True)
class SequencePlan:
    """Everything a task needs to turn its records into sequences."""

    sources: dict[str, SourceSpec]
    max_document_bytes: int
    tokenizer: TokenizerSpec
    packs: dict[SpecKey, PackSpec]
    lengths: dict[str, dict[int, float]]
    seed: int
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS


def seeded_unit(seed: int, salt: str, key: str) -> float:
    """A reproducible uniform draw in [0, 1) per (seed, salt, key)."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_length(document_id: str, fractions: dict[int, float], seed: int) -> int:
    """A document's sequence length, drawn so that token shares follow `fractions` in
    expectation; the same document always gets the same length."""
    draw = seeded_unit(seed, "length", document_id)
    cumulative = 0.0
    for length, fraction in sorted(fractions.items(), reverse=True):
        cumulative += fraction
        if draw < cumulative:
            return length
    return min(fractions)


def kept_records(rows: Iterable[dict[str, Any]], tally: Tally) -> Iterator[dict[str, Any]]:
    """Counts every record, passes on those that are documents."""
    for row in rows:
        count_record(tally, row)
        if row["skip_reason"] is None:
            yield row


def counted(documents: Iterable[dict[str, Any]], tally: Tally) -> Iterator[dict[str, Any]]:
    for document in documents:
        count_document(tally, document)
        yield document


class BucketPacker:
    """One packer per (domain, length) for the bucket at hand; a new bucket closes them."""

    def __init__(self, plan: SequencePlan, out: RowBuffer):
        self.plan = plan
        self.out = out
        self.bucket: int | None = None
        self.packers: dict[SpecKey, GroupPacker] = {}
        self.numbers: dict[SpecKey, int] = {}

    def add(
        self, document: dict[str, Any], ids: np.ndarray, mask: np.ndarray | None
    ) -> Iterator[pa.RecordBatch]:
        if document["bucket"] != self.bucket:
            yield from self.close()
            self.bucket = document["bucket"]
        domain = document["domain"]
        key = (domain, choose_length(document["id"], self.plan.lengths[domain], self.plan.seed))
        if key not in self.packers:
            self.packers[key] = GroupPacker(self.plan.packs[key])
            self.numbers[key] = 0
        self.out.tally.add(packing_key(key), documents_in=1, tokens_in=len(ids))
        for sequence in self.packers[key].add(document["kind"], ids, mask, len(ids)):
            yield from self.out.add("sequence", key, self.bucket, self.numbers[key], sequence)
            self.numbers[key] += 1

    def close(self) -> Iterator[pa.RecordBatch]:
        """The bucket's partial sequences; its drops into the tally."""
        for key, packer in sorted(self.packers.items()):
            for sequence in packer.close():
                yield from self.out.add("sequence", key, self.bucket, self.numbers[key], sequence)
                self.numbers[key] += 1
            partial = packer.partial()
            if partial is not None:
                yield from self.out.add("partial", key, self.bucket, self.numbers[key], partial)
            count_drops(self.out.tally, key, packer.drops)
        self.packers, self.numbers = {}, {}
        yield from self.out.commit()


def count_token_lengths(
    tally: Tally, document: dict[str, Any], ids: np.ndarray, plan: SequencePlan, tokenizer
) -> list[int]:
    """The document's length, and its records' (a repository's files: the tokens that start
    inside each file), into the length statistics; the records' lengths returned."""
    source, domain = document["source"], document["domain"]
    count_lengths(tally, "document", source, domain, [len(ids)], plan.thresholds)
    ends = document["member_ends"]
    members = (
        member_token_counts(ids, tokenizer.byte_lengths(), ends) if len(ends) > 1 else [len(ids)]
    )
    count_lengths(tally, "read", source, domain, members, plan.thresholds)
    return members


def sequences_partition(
    batches: Iterable[pa.RecordBatch], plan: SequencePlan, sink: SequenceSink | None = None
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: sorted READ_SCHEMA rows (with `bucket`) in, SEQUENCE_SCHEMA out
    (with a sink: partial, tally and commit rows; the sequences went to the sink)."""
    tokenizer = load_tokenizer(plan.tokenizer)
    out = RowBuffer(Tally(), plan.thresholds, sink)
    packer = BucketPacker(plan, out)
    records = kept_records(rows_of(as_binary(batches), INPUT_COLUMNS), out.tally)
    documents = counted(concatenate_rows(records, plan.sources, plan.max_document_bytes), out.tally)
    for document, ids, mask in encode_documents(documents, tokenizer):
        members = count_token_lengths(out.tally, document, ids, plan, tokenizer)
        yield from out.add_records(document, members)
        yield from packer.add(document, ids, mask)
    yield from packer.close()
    yield from out.close()

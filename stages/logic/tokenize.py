"""The tokenize stage's per-partition work: documents in, token arrays out, text dropped.

Token ids travel as Arrow `list<int32>`: Spark has no unsigned integer types, and every
vocabulary fits in 31 bits; the MDS writer stores them as uint32.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.logic.tokenizers import Tokenizer, TokenizerError, TokenizerSpec, load_tokenizer

TOKENS_SCHEMA = pa.schema(
    [
        ("id", pa.large_string()),
        ("source", pa.large_string()),
        ("domain", pa.large_string()),
        ("kind", pa.large_string()),
        ("input_ids", pa.list_(pa.int32())),
        ("mask", pa.list_(pa.int8())),
        ("length", pa.int64()),
    ]
)
LLAMA3_CHAT_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def chat_pieces(messages: list[dict], tokenizer: Tokenizer) -> list[tuple[str | int, bool]]:
    """A chat as (ordinary text or special id, trained?) pieces: the tokenizer's own chat
    template when it has one, else Llama-3's format; assistant turns are trained on."""
    if tokenizer.chat_template():
        shares = tokenizer.render_chat_text(messages)
        return [(s, m["role"] == "assistant") for s, m in zip(shares, messages, strict=True)]
    ids = [tokenizer.special_id(t) for t in LLAMA3_CHAT_TOKENS]
    if None in ids:
        raise TokenizerError(
            f"tokenizer {tokenizer.name!r} has no chat template and lacks Llama-3's chat tokens"
        )
    begin, start, end, eot = ids
    pieces: list[tuple[str | int, bool]] = [(begin, False)]
    for message in messages:
        trained = message["role"] == "assistant"
        pieces += [(start, False), (message["role"], False), (end, False)]
        pieces += [("\n\n" + message["content"], trained), (eot, trained)]
    return pieces


def render_chat(messages: list[dict], tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of one chat; mask is 1 on the tokens to train on."""
    pieces = chat_pieces(messages, tokenizer)
    texts = [p for p, _ in pieces if isinstance(p, str)]
    ids, offsets = tokenizer.encode_batch(texts)
    out_ids, out_mask, k = [], [], 0
    for piece, trained in pieces:
        if isinstance(piece, str):
            chunk = ids[offsets[k] : offsets[k + 1]]
            k += 1
        else:
            chunk = np.array([piece], dtype=np.uint32)
        out_ids.append(chunk)
        out_mask.append(np.full(len(chunk), trained, dtype=np.int8))
    return np.concatenate(out_ids), np.concatenate(out_mask)


def list_array(values: np.ndarray, offsets: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, dtype))


def tokenize_text(batch: pa.RecordBatch, tokenizer: Tokenizer) -> pa.RecordBatch:
    ids, offsets = tokenizer.encode_batch(batch.column("text").to_pylist())
    return pa.RecordBatch.from_arrays(
        [
            *(batch.column(c) for c in ("id", "source", "domain", "kind")),
            list_array(ids.view(np.int32), offsets, pa.int32()),
            pa.nulls(batch.num_rows, pa.list_(pa.int8())),
            pa.array(np.diff(offsets), pa.int64()),
        ],
        schema=TOKENS_SCHEMA,
    )


def tokenize_chat(batch: pa.RecordBatch, tokenizer: Tokenizer) -> pa.RecordBatch:
    rendered = [render_chat(json.loads(t), tokenizer) for t in batch.column("text").to_pylist()]
    lengths = np.array([len(ids) for ids, _ in rendered], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.concatenate([i for i, _ in rendered]) if rendered else np.array([], np.uint32)
    mask = np.concatenate([m for _, m in rendered]) if rendered else np.array([], np.int8)
    return pa.RecordBatch.from_arrays(
        [
            *(batch.column(c) for c in ("id", "source", "domain", "kind")),
            list_array(ids.astype(np.uint32).view(np.int32), offsets, pa.int32()),
            list_array(mask, offsets, pa.int8()),
            pa.array(lengths, pa.int64()),
        ],
        schema=TOKENS_SCHEMA,
    )


def tokenize_partition(
    batches: Iterable[pa.RecordBatch], spec: TokenizerSpec
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: DOCUMENT_SCHEMA batches in, TOKENS_SCHEMA batches out."""
    tokenizer = load_tokenizer(spec)
    for batch in batches:
        is_chat = pc.equal(batch.column("kind"), "chat")
        text = batch.filter(pc.invert(is_chat))
        chat = batch.filter(is_chat)
        if text.num_rows:
            yield tokenize_text(text, tokenizer)
        if chat.num_rows:
            yield tokenize_chat(chat, tokenizer)

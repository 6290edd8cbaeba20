"""Documents to token ids: whole-document encoding, and chats rendered with a train mask."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from stages.logic.errors import TaskError
from stages.logic.tokenizers import Tokenizer, TokenizerError

# Documents (and text bytes) in flight per tokenizer thread: enough look-ahead that a thread
# never waits behind one huge document, little enough to keep a worker's memory bounded.
WINDOW_PER_THREAD = 64
WINDOW_BYTES_PER_THREAD = 64 * 1024 * 1024
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


def encode_documents(
    documents: Iterable[dict[str, Any]], tokenizer: Tokenizer
) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray | None]]:
    """(document, ids, chat mask or None) in document order.

    Documents are encoded on the tokenizer's threads over a sliding window: the threads stay
    busy however unequal the documents are, and reading, concatenation and packing on this
    thread overlap with encoding (the tokenizers release the GIL). A document above the
    tokenizer's `split_bytes` is encoded in parts on several threads (`Tokenizer.parts`:
    exact), so one huge repository does not hold a task to one core. The window bounds the
    text held."""
    window: deque[tuple[dict[str, Any], list[Future]]] = deque()
    held = 0
    with ThreadPoolExecutor(tokenizer.threads) as pool:
        for document in documents:
            window.append((document, submit_document(pool, document, tokenizer)))
            held += document["bytes"]
            while (
                len(window) > WINDOW_PER_THREAD * tokenizer.threads
                or held > WINDOW_BYTES_PER_THREAD * tokenizer.threads
            ):
                done, futures = window.popleft()
                held -= done["bytes"]
                yield done, *joined_parts(futures)
        while window:
            done, futures = window.popleft()
            yield done, *joined_parts(futures)


def submit_document(
    pool: ThreadPoolExecutor, document: dict[str, Any], tokenizer: Tokenizer
) -> list[Future]:
    splits = tokenizer.split_safe and 0 < tokenizer.split_bytes < document["bytes"]
    if document["kind"] == "chat" or not splits:  # decoded and encoded on a pool thread
        return [pool.submit(encode_document, document, tokenizer)]
    parts = tokenizer.parts(as_text(document["text"]))
    return [pool.submit(encode_text, part, document, tokenizer) for part in parts]


def joined_parts(futures: list[Future]) -> tuple[np.ndarray, np.ndarray | None]:
    if len(futures) == 1:
        return futures[0].result()
    return np.concatenate([future.result()[0] for future in futures]), None


def encode_document(
    document: dict[str, Any], tokenizer: Tokenizer
) -> tuple[np.ndarray, np.ndarray | None]:
    """A document's ids; a failure names the document (its id holds file and record)."""
    if document["kind"] == "chat":
        try:
            return render_chat(json.loads(document["text"]), tokenizer)
        except Exception as exc:
            raise TaskError(f"cannot tokenize: {exc} (document {document['id']})") from exc
    return encode_text(as_text(document["text"]), document, tokenizer)


def encode_text(
    text: str, document: dict[str, Any], tokenizer: Tokenizer
) -> tuple[np.ndarray, None]:
    try:
        return tokenizer.encode_one(text), None
    except Exception as exc:
        raise TaskError(f"cannot tokenize: {exc} (document {document['id']})") from exc


def chat_problem(tokenizer: Tokenizer) -> str | None:
    """Why this tokenizer cannot render chats, if it cannot (known before any data is read)."""
    if tokenizer.chat_template():
        return None
    if any(tokenizer.special_id(t) is None for t in LLAMA3_CHAT_TOKENS):
        return (
            f"tokenizer {tokenizer.name!r} has no chat template and lacks Llama-3's chat "
            f"tokens ({', '.join(LLAMA3_CHAT_TOKENS)}), so it cannot render chat sources"
        )
    return None


def as_text(text: bytes | str) -> str:
    return text.decode("utf-8") if isinstance(text, bytes) else text

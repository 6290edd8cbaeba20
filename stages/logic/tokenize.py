"""Documents to token ids: whole-document encoding on threads (chats: `chats.render_chat`)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from longmix.stages.logic.chats import render_chat
from longmix.stages.logic.errors import TaskError
from longmix.stages.logic.tokenizers import Tokenizer

# Documents (and text bytes) in flight per tokenizer thread: enough look-ahead that a thread
# never waits behind one huge document, little enough to keep a worker's memory bounded.
WINDOW_PER_THREAD = 64
WINDOW_BYTES_PER_THREAD = 64 * 1024 * 1024


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


def as_text(text: bytes | str) -> str:
    return text.decode("utf-8") if isinstance(text, bytes) else text

"""Chats to token ids and a train mask, one rule for every format.

A chat is laid out as text in which the format's own parts (role headers, end-of-turn marks,
BOS) and the messages' contents have known character spans. The format's special tokens are
cut out of the format's parts and become their special ids; the text between them is
encoded as ordinary text, so a message's content that merely contains special-token text
(`<|im_end|>` in a user's message) stays text. Hugging Face tokenizers split a text at its
added tokens first and encode each piece alone, so for contents without special-token text
the ids are exactly those of `apply_chat_template(..., tokenize=True)`.

The mask (1: trained): the assistant's content and the first special token after it (its
end-of-turn) are trained; system and user turns, role headers and the text between turns are
not. Token boundaries that straddle a header and an assistant's content count as trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from longmix.stages.logic.tokenizers import Tokenizer, TokenizerError

LLAMA3_CHAT_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
# Placeholders for the contents while a template is rendered: private-use characters,
# which templates neither trim nor meet in their own text.
SENTINEL = "\ue000{}\ue001"
SENTINELS = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True)
class Layout:
    """A rendered chat: its text, the character spans of the messages' contents (with
    whether each is the assistant's) and of the format's special tokens (with their ids)."""

    text: str
    contents: list[tuple[int, int, bool]]
    specials: list[tuple[int, int, int]]


def render_chat(messages: list[dict], tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of one chat: the tokenizer's chat template when it has one, else
    Llama-3's format."""
    if tokenizer.chat_template():
        return encode_layout(template_layout(messages, tokenizer), tokenizer)
    return encode_layout(llama3_layout(messages, tokenizer), tokenizer)


def llama3_layout(messages: list[dict], tokenizer: Tokenizer) -> Layout:
    """`<|begin_of_text|>`, then per message `<|start_header_id|>role<|end_header_id|>\\n\\n`,
    its content and `<|eot_id|>`."""
    ids = [tokenizer.special_id(t) for t in LLAMA3_CHAT_TOKENS]
    if None in ids:
        raise TokenizerError(
            f"tokenizer {tokenizer.name!r} has no chat template and lacks Llama-3's chat tokens"
        )
    begin, start, end, eot = zip(LLAMA3_CHAT_TOKENS, ids, strict=True)
    text, contents, specials = "", [], []

    def special(token: tuple[str, int]) -> None:
        nonlocal text
        specials.append((len(text), len(text) + len(token[0]), token[1]))
        text += token[0]

    special(begin)
    for message in messages:
        special(start)
        text += message["role"]
        special(end)
        text += "\n\n"
        contents.append((len(text), len(text) + len(message["content"]), is_assistant(message)))
        text += message["content"]
        special(eot)
    return Layout(text, contents, specials)


def template_layout(messages: list[dict], tokenizer: Tokenizer) -> Layout:
    """The chat as the tokenizer's template renders it. The template is rendered once with a
    placeholder for each content, to learn which text is the format's, and the real rendering
    must equal that text with the contents put back (verbatim, or stripped as templates that
    `trim` them do)."""
    marked = [{**m, "content": SENTINEL.format(k)} for k, m in enumerate(messages)]
    skeleton = tokenizer.render_template(marked)
    rendered = tokenizer.render_template(messages)
    for strip in (False, True):
        layout = filled(skeleton, messages, strip, tokenizer.added_tokens())
        if layout is not None and layout.text == rendered:
            return layout
    raise TokenizerError(
        "the chat template changes the messages' content beyond trimming it, so its own "
        "text cannot be told from the content's; longmix cannot mask such a template"
    )


def filled(
    skeleton: str, messages: list[dict], strip: bool, added: dict[str, int]
) -> Layout | None:
    """The skeleton with each placeholder replaced by its content (None: a content appears
    other than once); special tokens are looked for in the format's text only."""
    parts = SENTINELS.split(skeleton)  # format text, index, format text, index, ...
    found = [int(k) for k in parts[1::2]]
    if sorted(found) != list(range(len(messages))):
        return None
    pattern = special_pattern(added)
    text, contents, specials = "", [], []
    for position, part in enumerate(parts):
        if position % 2:
            message = messages[int(part)]
            content = message["content"].strip() if strip else message["content"]
            contents.append((len(text), len(text) + len(content), is_assistant(message)))
            text += content
            continue
        if pattern is not None:
            specials += [
                (len(text) + m.start(), len(text) + m.end(), added[m.group()])
                for m in pattern.finditer(part)
            ]
        text += part
    return Layout(text, contents, specials)


def special_pattern(added: dict[str, int]) -> re.Pattern[str] | None:
    """The added tokens, longest first (as a tokenizer matches them)."""
    if not added:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))


def is_assistant(message: dict) -> bool:
    return message["role"] == "assistant"


def encode_layout(layout: Layout, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """The ids of a layout and its mask: ordinary text between the format's special tokens,
    trained where a token overlaps an assistant's content; each assistant content's
    end-of-turn (the first special token after it, before the next content) trained."""
    trained_spans = [(a, b) for a, b, assistant in layout.contents if assistant and b > a]
    end_of_turn = ends_of_turns(layout)
    ids_out, mask_out, cursor = [], [], 0
    closing = (len(layout.text), len(layout.text), None)  # the text after the last special
    for index, (start, end, token_id) in enumerate([*layout.specials, closing]):
        if start > cursor:
            ids, starts, ends = tokenizer.encode_offsets(layout.text[cursor:start])
            mask = np.zeros(len(ids), dtype=np.int8)
            for a, b in trained_spans:
                mask |= ((starts + cursor < b) & (ends + cursor > a)).astype(np.int8)
            ids_out.append(ids)
            mask_out.append(mask)
        if token_id is not None:
            ids_out.append(np.array([token_id], dtype=np.uint32))
            mask_out.append(np.array([index in end_of_turn], dtype=np.int8))
        cursor = end
    return np.concatenate(ids_out), np.concatenate(mask_out)


def ends_of_turns(layout: Layout) -> set[int]:
    """Indices of the special tokens that end an assistant's turn."""
    starts = sorted(a for a, _, _ in layout.contents)
    out = set()
    for _, content_end, assistant in layout.contents:
        if not assistant:
            continue
        following = [a for a in starts if a >= content_end]
        limit = following[0] if following else len(layout.text)
        for index, (start, _, _) in enumerate(layout.specials):
            if content_end <= start < limit:
                out.add(index)
                break
    return out


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

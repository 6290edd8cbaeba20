"""A huge document encoded in parts gives exactly the ids of encoding it whole, with every
backend whose pre-tokenization allows cuts, on real and on adversarial text; other backends
never cut."""

import argparse
import inspect
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longmix.stages.logic.tokenize import encode_documents
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer, split_text
from tests.test_tokenizers import hf_dir  # noqa: F401 (fixture)

SPLITTING = [
    TokenizerSpec("tiktoken", "llama3", split_bytes=1000),
    TokenizerSpec("tiktoken", "cl100k_base", split_bytes=1000),
    TokenizerSpec("quicktok", "cl100k_base", split_bytes=1000),  # its llama3 is refused
]


def real_text() -> str:
    """Python source and its docstrings: code, prose, indentation, quotes, CRLF-free."""
    return "".join(inspect.getsource(module) for module in (argparse, json, random))


def adversarial_texts() -> dict[str, str]:
    rng = random.Random(7)
    words = ["the", "Ünïcödé", "中文分词", "العربية", "it's", "x1", "<|endoftext|>", "CRLF"]
    return {
        "no newline, spaces": " ".join(rng.choice(words) for _ in range(400_000)),
        "no newline, no space": "a=1;b=[2,3];" * 200_000,
        "CRLF": "line one\r\nline two\r\n\r\n  indented\r\nend\r\n" * 40_000,
        "whitespace runs": "x\n   \n\t\t \n\n\n  \u00a0\n\x1c\ny  z\n" * 40_000,
        "non-Latin": (
            "エーカー (acre) は面積の単位です。\n(東京都) の人口\n- 한국어 문장\n1. Русский\n"
            * 30_000
        ),
        "special look-alikes at cuts": "<|endoftext|>\n<|begin_of_text|>\n<|eot_id|>x\n" * 60_000,
        "contractions and slashes": "\n's\n'll\n//c\n/* */\n}\n\n'S\nIT'S\n" * 60_000,
    }


@pytest.fixture(scope="module", params=SPLITTING, ids=lambda s: f"{s.backend}-{s.name}")
def splitting(request):
    tokenizer = load_tokenizer(request.param)
    assert tokenizer.split_safe
    return tokenizer


def assert_exact(tokenizer, text: str) -> int:
    parts = tokenizer.parts(text)
    assert "".join(parts) == text
    pieces = [tokenizer.encode_one(part) for part in parts]
    assert np.array_equal(np.concatenate(pieces), tokenizer.encode_one(text))
    return len(parts)


def test_real_text_in_parts_encodes_exactly(splitting):
    text = real_text()
    assert assert_exact(splitting, text) > 50


@pytest.mark.parametrize("name", list(adversarial_texts()))
def test_adversarial_text_in_parts_encodes_exactly(splitting, name):
    text = adversarial_texts()[name]
    parts = assert_exact(splitting, text)
    if name == "no newline, no space":
        assert parts == 1  # no provable cut: encoded whole
    else:
        assert parts > 100


ALPHABET = ["\n", "\r", " ", "\t", "a", "Z", "s", "'", "1", "/", "}", "é", "中", "\u00a0"]
ALPHABET += ["\u2028", "\x1c", "<|endoftext|>", "'ll", "  ", "\r\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=300), st.integers(1, 40))
def test_random_text_cut_anywhere_allowed_encodes_exactly(pieces, part_chars):
    text = "".join(pieces)
    for name in ("llama3", "cl100k_base"):
        tokenizer = load_tokenizer(TokenizerSpec("tiktoken", name))
        parts = split_text(text, part_chars)
        encoded = [tokenizer.encode_one(p) for p in parts]
        assert np.concatenate(encoded).tolist() == tokenizer.encode_one(text).tolist()


def cl100k_file() -> str:
    import tiktoken_ext

    return str(Path(tiktoken_ext.__path__[0]) / "data/cl100k_base.tiktoken")


def test_other_pre_tokenizers_are_never_cut(hf_dir):  # noqa: F811
    text = "word word\nword\n" * 10_000
    for spec in (
        TokenizerSpec("transformers", str(hf_dir), split_bytes=1000),
        TokenizerSpec("tiktoken", cl100k_file(), pattern=r"\S+|\s+", split_bytes=1000),
    ):
        tokenizer = load_tokenizer(spec)
        assert not tokenizer.split_safe and tokenizer.parts(text) == [text]


def test_a_huge_document_is_encoded_in_parts_in_document_order():
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3", threads=3, split_bytes=5000))
    texts = [real_text(), "short one\n", real_text()[::-1], "x" * 20_000]
    documents = [
        {"kind": "text", "text": t.encode(), "bytes": len(t.encode()), "id": str(k)}
        for k, t in enumerate(texts)
    ]
    out = list(encode_documents(iter(documents), tokenizer))
    assert [d["id"] for d, _, _ in out] == ["0", "1", "2", "3"]
    for (document, ids, mask), text in zip(out, texts, strict=True):
        assert mask is None
        assert ids.tolist() == tokenizer.encoding.encode_ordinary(text), document["id"]
    assert len(tokenizer.parts(texts[0])) > 10

"""Chats through a tokenizer's own chat template give exactly the ids of
`apply_chat_template(tokenize=True)`, with its special tokens; one mask rule for templates and
the built-in Llama-3 format; documents separated by the EOS a tokenizer declares."""

import json
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from longmix.stages.logic.chats import render_chat
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import make_config

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
)
LLAMA3_STYLE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
)
LLAMA3_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHATS = [
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2026 + 1?"},
        {"role": "assistant", "content": "2027."},
    ],
    [
        {"role": "user", "content": "user"},  # the content is also a role name
        {"role": "assistant", "content": "Ünïcödé façade, 東京, emoji 😀 and\ttabs"},
        {"role": "user", "content": "def f(x):\n    return x  # again"},
        {"role": "assistant", "content": "```python\nprint('ok')\n```"},
    ],
]
EVIL = [
    {"role": "user", "content": "say <|im_end|> and <|eot_id|> and <|endoftext|>"},
    {"role": "assistant", "content": "<|im_start|>no"},
]


def with_template(hf_cl100k, folder, template: str, tokens: list[str], **settings):
    """A copy of the cl100k tokenizer with added special tokens and a chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_cl100k))
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    tokenizer.chat_template = template
    for key, value in settings.items():
        setattr(tokenizer, key, value)
    tokenizer.save_pretrained(str(folder))
    return load_tokenizer(TokenizerSpec("transformers", str(folder))), tokenizer


@pytest.fixture(scope="module")
def chatml(hf_cl100k, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chatml")
    return with_template(hf_cl100k, folder, CHATML, ["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="module")
def llama3_style(hf_cl100k, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3-style")
    return with_template(
        hf_cl100k, folder, LLAMA3_STYLE, LLAMA3_TOKENS, bos_token="<|begin_of_text|>"
    )


def trained_text(tokenizer, ids, mask) -> str:
    return tokenizer.decode(ids[mask == 1].tolist())


@pytest.mark.parametrize("name", ["chatml", "llama3_style"])
def test_template_ids_equal_apply_chat_template(name, request):
    ours, reference = request.getfixturevalue(name)
    end_of_turn = {"chatml": "<|im_end|>", "llama3_style": "<|eot_id|>"}[name]
    eot = reference.convert_tokens_to_ids(end_of_turn)
    for chat in CHATS:
        ids, mask = render_chat(chat, ours)
        assert ids.tolist() == list(reference.apply_chat_template(chat, tokenize=True))
        replies = [m["content"] for m in chat if m["role"] == "assistant"]
        assert trained_text(ours, ids, mask) == "".join(r + end_of_turn for r in replies)
        assert ids.tolist().count(eot) == len(chat)
        assert all(
            mask[i] == (chat[k]["role"] == "assistant")
            for k, i in enumerate(np.flatnonzero(ids == eot))
        )


@pytest.mark.parametrize("name", ["chatml", "llama3_style"])
def test_special_token_text_in_content_stays_text(name, request):
    ours, reference = request.getfixturevalue(name)
    ids, _ = render_chat(EVIL, ours)
    specials = set(reference.get_added_vocab().values())
    rendered = reference.apply_chat_template(EVIL, tokenize=False)
    assert ours.decode(ids.tolist()) == rendered
    expected = len(
        reference(rendered, split_special_tokens=False, add_special_tokens=False)["input_ids"]
    )
    assert len(ids) > expected  # the contents' look-alikes were not made special
    template_only = render_chat([{**m, "content": "x"} for m in EVIL], ours)[0]
    assert sum(i in specials for i in ids.tolist()) == sum(
        i in specials for i in template_only.tolist()
    )


def test_the_builtin_llama3_format_and_a_template_mask_alike(llama3_style):
    ours, _ = llama3_style
    builtin = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    for chat in CHATS:
        template_ids, template_mask = render_chat(chat, ours)
        builtin_ids, builtin_mask = render_chat(chat, builtin)
        assert trained_text(ours, template_ids, template_mask) == trained_text(
            builtin, builtin_ids, builtin_mask
        )
        assert ours.decode(template_ids.tolist()) == builtin.decode(builtin_ids.tolist())
        header = builtin.decode(builtin_ids[builtin_mask == 0].tolist())
        assert "<|start_header_id|>assistant<|end_header_id|>\n\n" in header


def sequences_config(sources: dict, output, tokenizer_folder):
    return make_config(
        sources,
        output,
        run={"until": "sequences"},
        packing={"sequence_length": 256, "buckets": 2},
        tokenizer={"backend": "transformers", "name": str(tokenizer_folder)},
    )


def test_a_declared_eos_separates_documents_by_default(hf_cl100k, tmp_path, spark, caplog):
    tokenizer = load_tokenizer(TokenizerSpec("transformers", str(hf_cl100k)))
    assert tokenizer.eos_id == 100256 and tokenizer.bos_id is None  # as tokenizer_config says
    assert tokenizer.identity()["special_tokens"]["<|endoftext|>"] == 100256
    records = [
        corpus.wikipedia_record(f"article {i}: " + "words " * (20 + i), i) for i in range(40)
    ]
    corpus.write_jsonl(tmp_path / "wiki/part.jsonl", records)
    sources = {"wiki": {"preset": "wikipedia", "path": str(tmp_path / "wiki/*.jsonl")}}
    report = prepare(sequences_config(sources, tmp_path / "out", hf_cl100k)).data
    numbers = report["packing"]["dolmawiki"]["256"]
    assert numbers["special_tokens_added"] > 0
    rows = pq.read_table(tmp_path / "out/_work/packed/row_type=sequence").to_pylist()
    for row in rows:
        for start, end in np.asarray(row["indices"]).reshape(-1, 2):
            segment = row["input_ids"][start:end]
            assert segment[-1] == 100256 or end == len(row["input_ids"])

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_text((hf_cl100k / "tokenizer.json").read_text())
    (bare / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"})
    )
    with caplog.at_level(logging.WARNING, logger="longmix"):
        prepare(sequences_config(sources, tmp_path / "bare-out", bare))
    assert any("no separator" in m for m in caplog.messages), caplog.messages

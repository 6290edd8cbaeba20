"""`longmix peek`: a sample decoded with the output's tokenizer, cut at its `indices`, with
the trained text marked; as text for a pipe and as JSON."""

import json
import subprocess
import sys

import numpy as np
import yaml

from longmix.pipeline.peek import TRAINED_MARKS, peek
from longmix.pipeline.shards import shard_reader
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer


def peek_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "longmix", "peek", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def first_sample(folder, tmp_path) -> dict:
    shard = json.loads((folder / "index.json").read_text())["shards"][0]
    reader, problem = shard_reader(folder, shard, tmp_path)
    assert problem is None
    return reader.get_item(0)


def test_peek_cuts_a_sample_at_its_documents_and_marks_what_is_trained(reference, tmp_path):
    mix = yaml.safe_load((reference / "mix.yaml").read_text())
    chats = next(name for name, d in mix["domains"].items() if d["domain"] == "ultrachat")
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    item = first_sample(reference / chats, tmp_path)
    peeked = peek(reference / chats)
    indices = np.asarray(item["indices"]).reshape(-1, 2)
    assert len(peeked.documents) == len(indices)
    for (start, end), document in zip(indices, peeked.documents, strict=True):
        ids, mask = item["input_ids"][start:end], item["mask"][start:end]
        assert "".join(p.text for p in document) == tokenizer.decode(ids.tolist())
        trained = "".join(p.text for p in document if p.trained)
        assert trained == tokenizer.decode(ids[mask == 1].tolist()) or not mask.any()
    shown = peek_cli(str(reference / chats))
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = shown.stdout.splitlines()
    assert lines[0] == (
        f"{chats}, sample 0: domain ultrachat, {peeked.length:,} tokens, {len(indices)} documents; "
        "trained text between « and »"
    )
    assert sum(line.startswith("──── document ") for line in lines) == len(indices)
    assert TRAINED_MARKS[0] + "" in shown.stdout and "<|eot_id|>" + TRAINED_MARKS[1] in shown.stdout
    machine = peek_cli(str(reference), "--sample", "1", "--json")
    assert machine.returncode == 0, machine.stderr[-2000:]
    found = json.loads(machine.stdout)
    assert found["sample"] == 1 and found["directory"] == next(iter(mix["domains"]))
    if not found["masked"]:  # no mask: every token is trained, and nothing is marked
        assert all(p["trained"] for d in found["documents"] for p in d["pieces"])
        plain = peek_cli(str(reference), "--sample", "1").stdout
        assert plain.splitlines()[0].endswith("no mask: all trained")
        assert TRAINED_MARKS[0] not in plain
    wrong = peek_cli(str(reference / chats), "--sample", "100000")
    assert wrong.returncode == 2 and "holds samples 0 to" in wrong.stderr

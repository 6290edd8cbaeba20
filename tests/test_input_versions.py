"""A run's inputs are part of its identity: an output whose inputs changed is written again,
a resumed run never keeps units made from another version of its inputs, and a file that
changes while the run reads it stops the run with one line naming it."""

import json
import logging
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from longmix.pipeline.input_versions import (
    InputVersion,
    current_versions,
    first_change,
    recorded_versions,
    stale_versions,
    versions_digest,
    write_versions,
)
from longmix.pipeline.inputs import discover
from longmix.pipeline.shards import shard_reader
from longmix.pipeline.validate import validate
from longmix.stages.logic.errors import TaskError
from longmix.stages.logic.read import ReadTask, encode_bin, read_items
from longmix.stages.logic.sources import PRESETS
from longmix.stages.logic.storage import StorageOptions, expand, file_version
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import (
    TEST_SPARK_CONF,
    cards_beside,
    make_config,
    prepare_cli,
    prepare_command,
    start_and_wait_for,
    upload_tree,
)
from tests.test_ownership import one_error_line

PACKING = {"sequence_length": 256, "buckets": 4}
LOCAL = StorageOptions()


def articles(version: str, file: int, count: int = 30) -> list[dict]:
    """Wikipedia records whose every text says which version of the corpus it is."""
    return [
        corpus.wikipedia_record(
            f"{version} article {file}-{i}\n" + f"{version} words of article {i}. " * (8 + i % 9),
            file * 1000 + i,
        )
        for i in range(count)
    ]


def write_corpus(root: Path, version: str, files: int = 2) -> list[Path]:
    return [
        corpus.write_jsonl(root / f"wiki/part-{k}.jsonl", articles(version, k))
        for k in range(files)
    ]


def wiki_source(root: Path | str) -> dict:
    return {"wiki": {"preset": "wikipedia", "path": f"{root}/wiki/*.jsonl"}}


def decoded_samples(output: Path) -> list[str]:
    """Every MDS sample of every directory of mix.yaml, decoded with Llama-3."""
    names = yaml.safe_load((output / "mix.yaml").read_text())["domains"]
    return [text for name in names for text in decoded_folder(output / name)]


def decoded_folder(folder: Path) -> list[str]:
    """Every sample of the shards `folder`'s index.json lists, decoded with Llama-3."""
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    texts = []
    for shard in json.loads((folder / "index.json").read_text())["shards"]:
        with tempfile.TemporaryDirectory() as scratch:
            reader, problem = shard_reader(folder, shard, Path(scratch))
            assert problem is None, problem
            for i in range(reader.samples):
                texts.append(tokenizer.decode(list(reader.get_item(i)["input_ids"])))
    return texts


def only(version: str, texts: list[str]) -> bool:
    other = {"OLD": "NEW", "NEW": "OLD"}[version]
    return bool(texts) and all(version in t and other not in t for t in texts)


# What is listed and how a change is said


def version(uri: str, size: int, stamp: str, modified: str = "2026-12-01T00:00:00+00:00"):
    return InputVersion("source wiki", uri, size, modified, stamp)


def test_first_change_names_the_first_file_that_differs_and_how():
    before = [version("/d/a", 10, "1"), version("/d/b", 199098, "2"), version("/d/c", 5, "3")]
    grown = [before[0], version("/d/b", 204607, "9"), before[2]]
    assert first_change(before, grown) == "/d/b: size 199098 -> 204607"
    assert first_change(before, list(before)) is None
    touched = [before[0], version("/d/b", 199098, "9", "2026-12-02T00:00:00+00:00"), before[2]]
    assert first_change(before, touched) == (
        "/d/b: rewritten (modified 2026-12-01T00:00:00+00:00 -> 2026-12-02T00:00:00+00:00)"
    )
    same_second = [before[0], version("/d/b", 199098, "9"), before[2]]
    assert "same size and second, another modification time" in first_change(before, same_second)
    assert first_change(before, before[:2]) == "/d/c: removed"
    assert first_change(before[1:], before) == "/d/a: new source wiki file"
    assert versions_digest(before) != versions_digest(grown)
    assert versions_digest(before) == versions_digest(list(reversed(before)))


def test_the_listing_round_trips_and_an_older_listing_counts_as_unversioned(tmp_path):
    listed = [version(str(tmp_path / "a"), 3, "17"), version(str(tmp_path / "b"), 4, "18")]
    write_versions(str(tmp_path), listed, LOCAL)
    assert recorded_versions(str(tmp_path), LOCAL) == listed
    assert recorded_versions(str(tmp_path / "none"), LOCAL) is None
    older = tmp_path / "older"
    older.mkdir()
    (older / "_inputs.tsv").write_text("uri\tbytes\tmodified\n/d/a\t3\t2026-12-01T00:00:00+00:00\n")
    old = recorded_versions(str(older), LOCAL)
    assert first_change(old, [version("/d/a", 3, "17")]) == (
        "/d/a: no version recorded (written by an older longmix)"
    )


def test_a_local_tokenizer_folder_and_evaluation_files_are_inputs(tmp_path):
    write_corpus(tmp_path, "OLD", files=1)
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text('{"text": "a question"}\n')

    def listed(**run):
        config = make_config(
            wiki_source(tmp_path),
            tmp_path / "out",
            tokenizer={"backend": "transformers", "name": str(folder)},
            decontaminate={"paths": [str(evaluation)]},
            run=run,
        )
        return current_versions(config, discover(config))

    first = listed()
    assert sorted({v.role for v in first}) == ["evaluation", "source wiki", "tokenizer"]
    names = sorted(Path(v.uri).name for v in first if v.role == "tokenizer")
    assert names == ["tokenizer.json", "tokenizer_config.json"]
    os.utime(folder / "tokenizer_config.json", ns=(1, 1))
    assert first_change(first, listed()).startswith(f"{folder}/tokenizer_config.json: rewritten")
    by_content = listed(inputs_check="content")
    assert all(v.stamp.startswith("sha256:") for v in by_content)
    os.utime(evaluation, ns=(2, 2))  # a new time, the same bytes: unchanged by content
    same_bytes = listed(inputs_check="content")
    assert versions_digest(same_bytes) == versions_digest(by_content)
    evaluation.write_text('{"text": "b question"}\n')  # the same size, other bytes
    os.utime(evaluation, ns=(2, 2))
    assert first_change(same_bytes, listed(inputs_check="content")) == (
        f"{evaluation}: rewritten (same size and second, another content hash)"
    )


def test_a_task_refuses_a_file_that_changed_since_it_was_listed(tmp_path):
    (path,) = write_corpus(tmp_path, "OLD", files=1)
    (entry,) = expand(str(path), LOCAL)
    task = ReadTask("wiki", entry.uri, entry.relative, entry.size, entry.modified, entry.stamp)
    specs = {"wiki": PRESETS["wikipedia"]}
    assert len(list(read_items(encode_bin([task]), specs, LOCAL, strict=True))) == 30
    os.utime(path, ns=(5, 5))
    with pytest.raises(TaskError) as err:
        list(read_items(encode_bin([task]), specs, LOCAL, strict=True))
    assert err.value.message.startswith(f"{path} changed while the run read its inputs")
    path.unlink()
    with pytest.raises(TaskError, match="was removed while the run read its inputs"):
        list(read_items(encode_bin([task]), specs, LOCAL, strict=True))


def test_s3_inputs_are_versioned_by_etag(tmp_path, s3_client, s3_endpoint):
    write_corpus(tmp_path / "corpus", "OLD")
    upload_tree(s3_client, tmp_path / "corpus", "versioned", "c")
    storage = StorageOptions(s3_endpoint)
    listed = expand("s3://versioned/c/wiki/*.jsonl", storage)
    assert [file_version(e.uri, storage) for e in listed] == [(e.size, e.stamp) for e in listed]
    assert all(e.stamp.startswith('"') for e in listed)  # an ETag
    same_size = (tmp_path / "corpus/wiki/part-1.jsonl").read_bytes().replace(b"OLD", b"NEW")
    s3_client.put_object(Bucket="versioned", Key="c/wiki/part-1.jsonl", Body=same_size)
    assert file_version(listed[1].uri, storage)[0] == listed[1].size
    assert file_version(listed[1].uri, storage)[1] != listed[1].stamp
    versions = [InputVersion("source wiki", e.uri, e.size, e.modified, e.stamp) for e in listed]
    assert stale_versions(versions, storage) == [f"{listed[1].uri}: rewritten (another ETag)"]


# Whole runs


def test_a_finished_output_whose_input_changed_is_written_again(tmp_path, spark, caplog):
    files = write_corpus(tmp_path / "corpus", "OLD")
    output = tmp_path / "out"
    config = make_config(wiki_source(tmp_path / "corpus"), output, packing=PACKING)
    first = prepare(config).data
    assert only("OLD", decoded_samples(output))
    assert validate(str(output), LOCAL).warnings == []
    old_size = files[0].stat().st_size
    corpus.write_jsonl(files[0], articles("NEW", 0, count=31))
    corpus.write_jsonl(files[1], articles("NEW", 1))
    assert validate(str(output), LOCAL).warnings == [
        f"input changed since the output was written: {files[0]}: size {old_size} -> "
        f"{files[0].stat().st_size}",
        f"input changed since the output was written: {files[1]}: rewritten (another "
        "modification time)",
    ]
    with caplog.at_level(logging.WARNING, logger="longmix"):
        again = prepare(config).data
    assert "already_complete" not in again
    assert again["inputs_sha256"] != first["inputs_sha256"]
    assert caplog.messages[0] == (
        f"inputs changed since the output was written ({files[0]}: size {old_size} -> "
        f"{files[0].stat().st_size}); writing it again"
    )
    assert only("NEW", decoded_samples(output))
    assert validate(str(output), LOCAL).ok
    card = (output / "README.md").read_text()
    assert again["inputs_sha256"] in card and str(files[0]) in card
    assert prepare(config).data["already_complete"] is True  # unchanged: nothing to do


def tiny_tokenizer(folder: Path, texts: list[str]) -> Path:
    """A byte-level BPE `transformers` folder trained here on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


def test_a_changed_tokenizer_file_or_evaluation_file_writes_the_output_again(
    tmp_path, spark, caplog
):
    write_corpus(tmp_path / "corpus", "OLD")
    folder = tiny_tokenizer(tmp_path / "tok", [r["text"] for r in articles("OLD", 0)])
    evaluation = tmp_path / "eval.jsonl"
    corpus.write_jsonl(evaluation, [{"text": articles("OLD", 1)[3]["text"]}])
    config = make_config(
        wiki_source(tmp_path / "corpus"),
        tmp_path / "out",
        packing=PACKING,
        tokenizer={"backend": "transformers", "name": str(folder)},
        decontaminate={"paths": [str(evaluation)], "ngram": 5},
    )
    first = prepare(config).data
    assert first["contamination"]["sources"]["wiki"]["documents"] > 0
    assert prepare(config).data["already_complete"] is True
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 9}))
    with caplog.at_level(logging.WARNING, logger="longmix"):
        assert "already_complete" not in prepare(config).data
    assert f"({folder}/tokenizer_config.json: size" in caplog.messages[0]
    caplog.clear()
    corpus.write_jsonl(evaluation, [{"text": articles("OLD", 1)[4]["text"]}])
    with caplog.at_level(logging.WARNING, logger="longmix"):
        assert "already_complete" not in prepare(config).data
    assert f"({evaluation}: " in caplog.messages[0]


def test_s3_inputs_changed_in_place_are_read_again(tmp_path, s3_client, s3_endpoint, spark):
    write_corpus(tmp_path / "corpus", "OLD")
    upload_tree(s3_client, tmp_path / "corpus", "rewritten", "c")
    config = make_config(
        wiki_source("s3://rewritten/c"),
        tmp_path / "out",
        storage={"s3_endpoint_url": s3_endpoint},
        packing=PACKING,
        run={"until": "sequences"},
    )
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))

    def texts() -> list[str]:
        rows = pq.read_table(tmp_path / "out/_work/packed/row_type=sequence").to_pylist()
        return [tokenizer.decode(r["input_ids"]) for r in rows]

    prepare(config)
    assert only("OLD", texts())
    for k in range(2):  # the same sizes, other bytes: only the ETags tell
        body = (tmp_path / f"corpus/wiki/part-{k}.jsonl").read_bytes().replace(b"OLD", b"NEW")
        s3_client.put_object(Bucket="rewritten", Key=f"c/wiki/part-{k}.jsonl", Body=body)
    assert "already_complete" not in prepare(config).data
    assert only("NEW", texts())
    assert prepare(config).data["already_complete"] is True


def run_config(root: Path, output: Path, **sections) -> dict:
    return {
        "run": {
            "name": output.name,
            "output": str(output),
            "seed": 5,
            "cards": cards_beside(output),
        },
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": wiki_source(root),
        "packing": PACKING,
        "mds": {"shard_size": 16384},
        **sections,
    }


@pytest.mark.slow
def test_a_resumed_run_never_mixes_two_versions_of_its_inputs(tmp_path):
    files = write_corpus(tmp_path / "corpus", "OLD", files=4)
    output = tmp_path / "out"
    config = run_config(tmp_path / "corpus", output)
    held = tmp_path / "held"  # the first unit committed; its task waits to be killed
    faulty = {**config, "faults": {"hold_after_commit": str(held)}}
    process = start_and_wait_for(
        held,
        prepare_command(faulty, tmp_path, "kill"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list((output / "_commits").rglob("*.json"))  # it committed from the old version
    for k, path in enumerate(files):
        corpus.write_jsonl(path, articles("NEW", k))
    resumed = prepare_cli(config, tmp_path, "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"longmix: inputs changed since the output was written ({files[0]}: " in resumed.stderr
    assert only("NEW", decoded_samples(output))
    clean = prepare_cli(run_config(tmp_path / "corpus", tmp_path / "clean"), tmp_path, "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert decoded_samples(output) == decoded_samples(tmp_path / "clean")
    assert validate(str(output), LOCAL).ok


@pytest.mark.slow
def test_an_input_rewritten_while_the_run_reads_it_stops_the_run(tmp_path):
    write_corpus(tmp_path / "corpus", "OLD", files=3)
    output = tmp_path / "out"
    held = tmp_path / "held"  # the first read task waits here before opening its first file
    config = run_config(tmp_path / "corpus", output, faults={"hold_before_read": str(held)})
    process = start_and_wait_for(
        held,
        prepare_command(config, tmp_path, "changing"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    opened = Path(held.read_text())
    corpus.write_jsonl(opened, articles("NEW", 9))
    Path(f"{held}.go").touch()
    out, err = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert result.returncode == 2, err[-3000:]
    line = one_error_line(result)
    assert line.startswith(f"longmix: error: {opened} changed while the run read its inputs")
    # Other files' bins may have committed their units (the direct pass); none holds text
    # of the file that changed, and the next run, seeing the change, writes them anew.
    changed = f"article {opened.stem.split('-')[1]}-"
    for commit in output.glob("_commits/*/*.json"):
        unit = json.loads(commit.read_text())
        texts = decoded_folder(output / unit["directory"] / unit["folder"])
        assert only("OLD", texts) and not any(changed in text for text in texts)
    assert not (output / "_report.json").exists()
    rerun = prepare_cli(run_config(tmp_path / "corpus", output), tmp_path, "rerun")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    clean = prepare_cli(run_config(tmp_path / "corpus", tmp_path / "clean"), tmp_path, "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert decoded_samples(output) == decoded_samples(tmp_path / "clean")

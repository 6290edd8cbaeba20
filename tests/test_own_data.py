"""The first hour with your own files: sources by format (no preset), nothing lost silently,
an output that validates, a card that tells what the data is. Every file is written here, in
the formats users have."""

import logging
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from longmix.pipeline import corpus
from longmix.pipeline.config import load_config
from longmix.pipeline.driver import prepare, refuse_lost_sources
from longmix.pipeline.inputs import discover
from longmix.pipeline.validate import validate
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.readers import Skip, guess_format, read_file
from longmix.stages.logic.sources import SourceSpec
from longmix.stages.logic.storage import StorageOptions, open_input
from tests.conftest import TEST_SPARK_CONF, cards_beside, make_config, prepare_cli
from tests.test_ownership import one_error_line

LICENSE = "Permission is hereby granted, free of charge, to any person obtaining a copy. " * 40


def prose(topic: str, count: int) -> list[str]:
    return [
        f"{topic} note {i}: " + f"{topic} sentence number {i} goes here. " * (10 + i % 7)
        for i in range(count)
    ]


def own_files(root: Path) -> dict:
    """A folder of .jsonl with `text`, a parquet file with `body`, a folder of .txt files and
    a Hugging Face `save_to_disk`-style Arrow folder; the sources that read them."""
    corpus.write_jsonl(
        root / "docs/a.jsonl", [{"text": t, "id": k} for k, t in enumerate(prose("doc", 20))]
    )
    corpus.write_jsonl(root / "docs/b.jsonl.gz", [{"text": t} for t in prose("gz", 10)])
    table = pa.table({"body": prose("paper", 15), "n": list(range(15))})
    pq.write_table(table, root / "papers.parquet")
    (root / "notes").mkdir()
    for k, text in enumerate(prose("note", 6)):
        (root / f"notes/{k}.txt").write_text(text)
    (root / "saved").mkdir()
    with pa.ipc.new_stream(
        root / "saved/data-00000-of-00001.arrow", pa.schema([("text", pa.string())])
    ) as out:
        out.write_table(pa.table({"text": prose("arrow", 8)}))
    (root / "saved/dataset_info.json").write_text("{}")
    (root / "saved/state.json").write_text("{}")
    return {
        "docs": {
            "path": str(root / "docs"),
            "format": "jsonl",
            "id_column": "id",
            "license": "cc-by-4.0",
            "origin": "https://example.org/my-docs",
            "language": "en",
        },
        "papers": {
            "path": str(root / "papers.parquet"),
            "format": "parquet",
            "text_column": "body",
        },
        "notes": {"path": str(root / "notes"), "format": "text", "domain": "mynotes"},
        "saved": {"path": str(root / "saved"), "format": "arrow", "license": "mit"},
    }


# Reading your own formats, without Spark


def test_text_and_arrow_files_are_read_as_documents(tmp_path):
    sources = own_files(tmp_path)
    opener = lambda uri: open_input(uri, StorageOptions())  # noqa: E731
    notes = SourceSpec.generic("notes", "text")
    (document,) = read_file(notes, str(tmp_path / "notes/0.txt"), "0.txt", opener)
    assert document.text == prose("note", 6)[0] and document.metadata["domain"] == "notes"
    arrow = SourceSpec.generic("saved", "arrow")
    found = list(read_file(arrow, str(tmp_path / "saved/data-00000-of-00001.arrow"), "d", opener))
    assert [d.text for d in found] == prose("arrow", 8)
    config = make_config(sources, tmp_path / "out")
    listed = {t.uri.rsplit("/", 1)[-1] for t in discover(config) if t.source == "saved"}
    assert listed == {"data-00000-of-00001.arrow"}  # not its dataset_info.json
    assert guess_format(b"PAR1....") == "parquet"
    assert guess_format(b'{"text": 1}') == "jsonl"
    assert guess_format(b"\xff\xff\xff\xff\x10") == "arrow"
    assert guess_format(b"plain words") == "text"
    bad = list(
        read_file(SourceSpec.generic("p", "parquet"), str(tmp_path / "docs/a.jsonl"), "a", opener)
    )
    assert isinstance(bad[0], Skip) and bad[0].reason == "unreadable_file"


def test_a_source_needs_a_format_or_a_preset(tmp_path):
    with pytest.raises(LongmixError, match="give format \\(one of jsonl, parquet, arrow, text\\)"):
        make_config({"mine": {"path": "x"}}, tmp_path / "out")
    with pytest.raises(LongmixError, match=r"unknown preset 'fineweeb'; known: .* leave"):
        make_config({"mine": {"path": "x", "preset": "fineweeb"}}, tmp_path / "out")


def test_relative_paths_resolve_against_the_config_file_and_set_against_the_current_folder(
    tmp_path, monkeypatch
):
    project = tmp_path / "project"
    corpus.write_jsonl(project / "data/a.jsonl", [{"text": "one"}])
    (project / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "run": {"output": "out"},
                "sources": {"a": {"path": "data/*.jsonl", "format": "jsonl"}},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(project / "run.yaml", ["run.cards=cards"])
    assert config.output == str(project / "out")
    assert config.run.cards == str(elsewhere / "cards")
    assert [t.uri for t in discover(config)] == [str(project / "data/a.jsonl")]
    missing = load_config(project / "run.yaml", ["sources.a.path=nothing/*.jsonl"])
    with pytest.raises(LongmixError, match=f"no files match {elsewhere}/nothing/\\*.jsonl"):
        discover(missing)


# Whole runs


def test_your_own_sources_run_and_the_card_tells_their_origin(tmp_path, spark):
    config = make_config(
        own_files(tmp_path / "mine"), tmp_path / "out", packing={"sequence_length": 256}
    )
    report = prepare(config).data
    documents = {
        name: {d: n["documents"] for d, n in found["domains"].items()}
        for name, found in report["sources"].items()
    }
    assert documents == {
        "docs": {"docs": 30},
        "papers": {"papers": 15},
        "notes": {"mynotes": 6},
        "saved": {"saved": 8},
    }
    assert validate(str(tmp_path / "out"), StorageOptions()).ok
    card = (tmp_path / "out/README.md").read_text()
    assert "https://example.org/my-docs" in card and "cc-by-4.0" in card and "| mit |" in card
    assert "own files (parquet)" in card
    for preset_word in ("HuggingFaceFW", "odc-by", "dolma", "fineweb"):
        assert preset_word not in card
    front = yaml.safe_load(card.split("---")[1])
    assert front["language"] == ["en"]
    sections = [line for line in card.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Sources" and sections[-1] == "## Configuration"


def test_a_source_of_unreadable_files_fails_in_one_line_and_leaves_no_output(tmp_path):
    corpus.write_jsonl(tmp_path / "mine/a.jsonl", [{"text": t} for t in prose("x", 5)])
    output = tmp_path / "out"
    config = {
        "run": {"name": "wrong", "output": str(output), "cards": cards_beside(output)},
        "spark": {"master": "local[1]", "conf": dict(TEST_SPARK_CONF)},
        "sources": {"mine": {"preset": "fineweb", "path": str(tmp_path / "mine/*.jsonl")}},
    }
    result = prepare_cli(config, tmp_path, "wrong")
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert line.startswith(
        f"longmix: error: source 'mine' yields no document from {tmp_path}/mine/a.jsonl"
    )
    assert line.endswith(
        "its bytes look like jsonl, but its preset fineweb reads parquet: leave preset out and "
        "set format: jsonl"
    )
    assert not output.exists()  # refused before work: no folder left behind
    assert "Traceback" not in result.stderr


def test_identical_files_give_an_output_that_validates_with_a_warning(tmp_path):
    for k in range(4):
        (tmp_path / f"licenses/copy{k}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / f"licenses/copy{k}.txt").write_text(LICENSE)
    (tmp_path / "licenses/other.txt").write_text(LICENSE.replace("copy", "COPY"))
    output = tmp_path / "out"
    config = {
        "run": {"name": "licenses", "output": str(output), "cards": cards_beside(output)},
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": {"licenses": {"path": str(tmp_path / "licenses"), "format": "text"}},
        "packing": {"sequence_length": 256, "domains": {"licenses": {"mode": "long"}}},
    }
    result = prepare_cli(config, tmp_path, "licenses")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "longmix: 3 documents are exact copies of others (kept; `dedup: exact`" in result.stderr
    for noise in ("log4j", "NativeCodeLoader", "incubator"):  # the JVM's start-up lines
        assert noise not in result.stderr
    checked = validate(str(output), StorageOptions())
    assert checked.ok, checked.failures
    assert len(checked.warnings) == 1 and "`dedup: exact` removes them" in checked.warnings[0]
    card = subprocess.run(
        [
            sys.executable,
            "-m",
            "longmix",
            "card",
            str(output),
            "--cards",
            str(tmp_path / "cards"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert card.returncode == 0, card.stderr[-3000:]
    assert "Warnings:" in (output / "README.md").read_text()


def test_a_domain_without_sequences_and_a_changed_config_are_said(tmp_path, spark, caplog):
    corpus.write_jsonl(tmp_path / "mine/a.jsonl", [{"text": t} for t in prose("short", 30)])
    sources = {"mine": {"path": str(tmp_path / "mine/a.jsonl"), "format": "jsonl"}}
    long = {"sequence_length": 4096, "domains": {"mine": {"mode": "long"}}}
    config = make_config(sources, tmp_path / "out", packing=long)
    with (
        caplog.at_level(logging.WARNING, logger="longmix"),
        pytest.raises(LongmixError, match="no sequence at all"),
    ):
        prepare(config)
    assert any(
        m.startswith("mine at length 4096: no sequence (") and "below_min_length" in m
        for m in caplog.messages
    ), caplog.messages
    caplog.clear()
    short = make_config(sources, tmp_path / "out", packing={"sequence_length": 256})
    prepare(short)
    changed = make_config(
        sources, tmp_path / "out", packing={"sequence_length": 256}, run={"seed": 99}
    )
    with caplog.at_level(logging.WARNING, logger="longmix"):
        prepare(changed)
    assert "config changed since this output was written: writing it again" in caplog.messages


def test_a_source_left_without_documents_ends_the_run_unless_removed_on_purpose(tmp_path):
    config = make_config(
        {"a": {"path": "x", "format": "jsonl"}, "b": {"path": "y", "format": "jsonl"}},
        tmp_path / "out",
    )
    found = {"count": 4, "files": {"/d/y.jsonl": {"count": 4, "example": "Expecting value"}}}
    sources = {
        "a": {"domains": {"a": {"documents": 3}}, "skipped": {}},
        "b": {"domains": {}, "skipped": {"invalid_json": found}},
    }
    with pytest.raises(LongmixError) as err:
        refuse_lost_sources(config, sources)
    assert str(err.value) == (
        "source 'b' yielded no document: 4 records skipped as invalid_json, the first in "
        "/d/y.jsonl: Expecting value"
    )
    refuse_lost_sources(config, {**sources, "b": {"domains": {}, "skipped": {"duplicate": found}}})

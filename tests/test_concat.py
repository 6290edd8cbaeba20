"""Repository and book concatenation: the pure streaming logic, then the real Spark stage."""

import json
import random

import pyarrow.parquet as pq
import pytest

from longmix.pipeline import corpus
from longmix.pipeline.demo import package_files
from longmix.pipeline.driver import prepare
from longmix.stages.logic.concat import concatenate_rows
from longmix.stages.logic.sources import PRESETS
from tests.conftest import make_config

SPECS = {"stack": PRESETS["stack"]}


def rows(group, sizes):
    return [
        {
            "id": f"stack/{group}#{i}",
            "source": "stack",
            "domain": "code",
            "kind": "text",
            "group": group,
            "member": f"f{i}.py",
            "text": b"x" * size,
        }
        for i, size in enumerate(sizes)
    ]


def test_parts_close_before_passing_the_limit():
    docs = list(concatenate_rows(rows("a", [40, 40, 40, 200, 10]) + rows("b", [5]), SPECS, 100))
    assert [(d["group"], d["part"], d["members"]) for d in docs] == [
        ("a", 0, 2),
        ("a", 1, 1),
        ("a", 2, 1),
        ("a", 3, 1),
        ("b", 0, 1),
    ]
    for doc in docs:
        assert doc["bytes"] == len(doc["text"])
        assert doc["bytes"] <= 100 or doc["members"] == 1
    assert docs[0]["text"] == b"f0.py\n" + b"x" * 40 + b"\nf1.py\n" + b"x" * 40
    assert docs[0]["member_records"] == [("stack/a#0", None, 40), ("stack/a#1", None, 40)]


@pytest.fixture(scope="module")
def stack_corpus(tmp_path_factory):
    """Six repositories of real Python source, their files shuffled over four parquet files."""
    root = tmp_path_factory.mktemp("stack")
    sources = package_files("yaml") + package_files("rich")[:40]
    random.Random(1).shuffle(sources)
    files = [(f"org/repo{k % 6}", path, text) for k, (path, text) in enumerate(sources)]
    paths = corpus.write_stack(root, files, shards=4, seed=3)
    return root, files, paths


def run(tmp_path, name, paths, **sections):
    config = make_config(
        {"stack": {"preset": "stack", "path": [str(p) for p in paths]}},
        tmp_path / name,
        **{**sections, "run": {"until": "documents", **sections.get("run", {})}},
    )
    prepare(config)
    table = pq.read_table(tmp_path / name / "documents").to_pylist()
    return sorted(table, key=lambda d: d["id"]), config


def test_one_document_per_repository_with_every_file_once(tmp_path, stack_corpus, spark):
    _root, files, paths = stack_corpus
    for repo in {r for r, _, _ in files}:
        holding = {
            p for p in paths if repo in pq.read_table(p).column("max_stars_repo_name").to_pylist()
        }
        assert len(holding) >= 3, "fixture must spread each repository over 3+ files"
    docs, _config = run(tmp_path, "a", paths)
    by_repo = {d["group"]: d for d in docs}
    assert len(docs) == len(by_repo) == 6
    for repo, doc in by_repo.items():
        members = [(p, t) for r, p, t in files if r == repo and t.strip()]
        pieces = [f"{path}\n{text}" for path, text in members]
        assert all(doc["text"].count(piece) == 1 for piece in pieces)
        assert len(doc["text"]) == sum(map(len, pieces)) + len(pieces) - 1
        assert doc["members"] == len(members)
        order = [doc["text"].index(piece) for piece in pieces]
        assert order != sorted(order) or len(order) < 3, "files must not keep input order"
        paths_in_doc = sorted(members, key=lambda m: doc["text"].index(f"{m[0]}\n{m[1]}"))
        assert [p for p, _ in paths_in_doc] != sorted(p for p, _ in members)
    report = json.loads((tmp_path / "a" / "_report.json").read_text())
    empty = sum(1 for _, _, t in files if not t.strip())
    assert report["sources"]["stack"]["skipped"].get("empty_text", {"count": 0})["count"] == empty
    assert report["documents"]["stack"]["thestackv1_concat_by_repo"]["documents"] == 6


def test_same_documents_whatever_the_file_order_and_partitioning(tmp_path, stack_corpus, spark):
    _, _, paths = stack_corpus
    first, _ = run(tmp_path, "a", paths)
    second, _ = run(
        tmp_path,
        "b",
        list(reversed(paths)),
        read_target_bytes=50_000,
        concat={"partitions": 7},
    )
    assert [d["id"] for d in first] == [d["id"] for d in second]
    assert [d["text"].encode() for d in first] == [d["text"].encode() for d in second]


def test_seed_changes_the_file_order(tmp_path, stack_corpus, spark):
    _, _, paths = stack_corpus
    first, _ = run(tmp_path, "a", paths)
    other, _ = run(tmp_path, "b", paths, run={"seed": 8})
    assert sorted(first[0]["text"]) == sorted(other[0]["text"])
    assert first[0]["text"] != other[0]["text"]


def test_textbooks_chapters_in_order_books_per_subject(tmp_path, spark):
    chapters = [
        {"subject": s, "book": b, "chapter": c, "title": f"{b}{c}", "text": f"<{s}/{b}/{c}>"}
        for s in ("math", "bio")
        for b in ("b1", "b2", "b3")
        for c in range(4)
    ]
    random.Random(0).shuffle(chapters)
    paths = [
        corpus.write_parquet(
            tmp_path / f"train-0000{k}-of-00003.parquet", chapters[k::3], corpus.TEXTBOOK_SCHEMA
        )
        for k in range(3)
    ]
    config = make_config(
        {"books": {"preset": "textbooks", "path": [str(p) for p in paths]}},
        tmp_path / "o",
        run={"until": "documents"},
    )
    prepare(config)
    docs = {d["group"]: d["text"] for d in pq.read_table(tmp_path / "o" / "documents").to_pylist()}
    assert set(docs) == {"math", "bio"}
    for subject, text in docs.items():
        parts = text.split("\n\n")
        assert len(parts) == 12 and sorted(parts) == sorted(
            f"<{subject}/{b}/{c}>" for b in ("b1", "b2", "b3") for c in range(4)
        )
        books = [p.split("/")[1] for p in parts]
        assert [books[i] for i in range(0, 12, 4)] == [books[i + 3] for i in range(0, 12, 4)]
        for start in range(0, 12, 4):
            assert [p.split("/")[2] for p in parts[start : start + 4]] == ["0>", "1>", "2>", "3>"]

"""Exact duplicates and evaluation contamination on a corpus with planted copies: counted
exactly on every run; with removal on, each planted copy and contaminated document gone,
nothing else, every token still accounted for, and the same samples whatever the partitioning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from longmix.pipeline import corpus
from longmix.pipeline.driver import prepare
from longmix.pipeline.summary import duplicates_section
from longmix.stages.logic.fingerprints import Fingerprints, NGramIndex, text_hash, window_hashes
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import TEST_SPARK_CONF, make_config, prepare_cli

WORDS = 80


def page(seed: str) -> str:
    """A web page of distinct words (hex digests), so no two pages share an n-gram."""
    return " ".join(corpus.sha1(f"{seed}/{k}")[:10] for k in range(WORDS))


WEB = [page(f"web{i}") for i in range(12)]
EDU = [page(f"edu{i}") for i in range(6)]
FILES = {f"src/m{k}.py": f"def f{k}():\n    return '{page(f'code{k}')}'\n" for k in range(5)}
# The evaluation texts: one quotes 20 words of WEB[5], one quotes 15 words of EDU[3].
PADDED = f"\n {WEB[0]}  \n"  # the same text as WEB[0] once stripped
EVAL_JSONL = [
    {"text": "question: " + " ".join(WEB[5].split()[30:50]) + " answer: yes"},
    {"text": "an unrelated question about nothing in the corpus at all today ok"},
]
EVAL_TXT = "Passage. " + " ".join(EDU[3].split()[10:25]) + " End."


def planted_corpus(root: Path) -> Path:
    """fineweb: WEB, WEB[0] again in another file (+ whitespace around it); fineweb-edu: EDU
    and copies of WEB[1], WEB[2]; stack: repositories a (3 files), b (2 files and a vendored
    copy of one of them) and z-fork, a's files under another name."""
    web = [corpus.fineweb_row(t, i) for i, t in enumerate(WEB)]
    corpus.write_parquet(root / "web/000.parquet", web[:6], corpus.FINEWEB_SCHEMA)
    again = [corpus.fineweb_row(t, i) for i, t in enumerate([*WEB[6:], PADDED])]
    corpus.write_parquet(root / "web/001.parquet", again, corpus.FINEWEB_SCHEMA)
    edu = [corpus.fineweb_row(t, i, edu=True) for i, t in enumerate([*EDU, WEB[1], WEB[2]])]
    corpus.write_parquet(root / "edu/000.parquet", edu, corpus.FINEWEB_EDU_SCHEMA)
    names = sorted(FILES)
    files = [("org/a", p, FILES[p]) for p in names[:3]] + [
        ("org/b", p, FILES[p]) for p in names[3:]
    ]
    files += [("org/b", "vendor/m3.py", FILES[names[3]])]
    files += [("org/z-fork", p, FILES[p]) for p in names[:3]]
    corpus.write_stack(root / "stack", files, shards=2)
    corpus.write_jsonl(root / "evals/qa.jsonl", EVAL_JSONL)
    (root / "evals/passage.txt").write_text(EVAL_TXT)
    return root


def config(root: Path, output: Path, **sections) -> dict:
    run = {"name": "dedup", "output": str(output), "seed": 3, "cards": str(output.parent / "c")}
    return {
        "run": {**run, **sections.pop("run", {})},
        "spark": {"master": "local[2]", "conf": dict(TEST_SPARK_CONF)},
        "sources": {
            "fineweb": {"preset": "fineweb", "path": str(root / "web/*.parquet")},
            "fineweb-edu": {"preset": "fineweb-edu", "path": str(root / "edu/*.parquet")},
            "stack": {"preset": "stack", "path": str(root / "stack/**/*.parquet")},
        },
        "packing": {"sequence_length": 1024, "buckets": 4},
        "decontaminate": {"paths": [str(root / "evals/*")]},
        **sections,
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_corpus(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def counted(planted, tmp_path_factory, spark) -> dict:
    output = tmp_path_factory.mktemp("counted") / "out"
    data = config(planted, output, run={"until": "sequences"})
    return prepare(make_config(data["sources"], output, **without(data, "sources"))).data


def without(data: dict, *names: str) -> dict:
    return {k: v for k, v in data.items() if k not in (*names, "spark")}


def tokens(texts: list[str]) -> int:
    tokenizer = load_tokenizer(TokenizerSpec())
    return sum(len(tokenizer.encode_one(t)) for t in texts)


def test_window_hashes_skip_unknown_words_and_match_the_same_words():
    ids = np.array([1, 2, 3, -1, 1, 2, 3, 4])
    hashes = window_hashes(ids, 3)
    assert len(hashes) == 3  # [1,2,3], [1,2,3], [2,3,4]: none spans the unknown word
    assert hashes[0] == hashes[1] != hashes[2]


def test_an_evaluation_ngram_is_found_after_normalization_and_nothing_else():
    words = [f"w{chr(97 + k)}" for k in range(20)]  # digits would all normalize to 0
    index = NGramIndex.build([("qa.jsonl", " ".join(words))], 13)
    quoted = "Intro: " + ", ".join(w.upper() for w in words[2:15]) + "! more"
    assert index.matches(quoted) == ["qa.jsonl"]
    assert index.matches(" ".join([*words[:12], "x", *words[12:]])) == []
    assert index.summary()["ngrams"] == 8
    short = NGramIndex.build([("t.txt", "too short")], 13)
    assert short.summary()["files"]["t.txt"] == {"texts": 1, "too_short": 1, "ngrams": 0}


def test_normalizations_decide_what_is_the_same_text():
    assert text_hash(" a  b\n", "strip") == text_hash("a  b", "strip")
    assert text_hash("a  b", "strip") != text_hash("a b", "strip")
    assert text_hash("a \n b", "whitespace") == text_hash("a b", "whitespace")
    assert text_hash("Hello, World 42", "datatrove") == text_hash("hello world 7", "datatrove")


def test_removal_turns_a_contaminated_document_into_a_counted_skip():
    index = NGramIndex.build([("e.txt", EVAL_TXT)], 13)
    row = {"id": "s/f#1", "text": EDU[3], "skip_reason": None}
    marked = Fingerprints("strip", index, remove_contaminated=True).mark(dict(row))
    assert marked["skip_reason"] == "contaminated" and marked["text"] is None
    assert marked["contaminated"] == ["e.txt"] and "e.txt" in marked["skip_detail"]
    kept = Fingerprints("strip", index).mark(dict(row))
    assert kept["skip_reason"] is None and kept["contaminated"] == ["e.txt"]
    assert Fingerprints("strip", index).mark({**row, "text": EDU[0]})["contaminated"] is None


def test_the_section_splits_copies_within_and_across_sources():
    rows = [
        {"source": "a", "original_source": "a", "same_group": True, "documents": 2},
        {"source": "a", "original_source": "b", "same_group": False, "documents": 1},
    ]
    rows = [{**r, "bytes": 10, "tokens": None} for r in rows]
    section = duplicates_section(rows, [], removed=True)
    assert section["sources"]["a"] == {
        "within_source": 2,
        "across_sources": 1,
        "within_group": 2,
        "documents": 3,
        "bytes": 20,
    }
    assert section["pairs"] == {"a": {"b": {"documents": 1, "bytes": 10}}}


def test_planted_copies_and_contamination_are_counted_exactly(counted):
    found = counted["duplicates"]
    assert found["removed"] is False and found["normalize"] == "strip"
    web = found["sources"]["fineweb"]
    assert (web["documents"], web["within_source"], web["across_sources"]) == (1, 1, 0)
    assert web["tokens"] == tokens([PADDED])
    edu = found["sources"]["fineweb-edu"]
    assert (edu["documents"], edu["within_source"], edu["across_sources"]) == (2, 0, 2)
    assert found["pairs"] == {
        "fineweb-edu": {"fineweb": {**{k: edu[k] for k in ("documents", "bytes", "tokens")}}}
    }
    assert edu["tokens"] == tokens([WEB[1], WEB[2]])
    stack = found["sources"]["stack"]
    assert (stack["documents"], stack["within_source"], stack["within_group"]) == (4, 4, 1)
    forked = found["groups"]["stack"]
    assert (forked["groups"], forked["documents"]) == (1, 3)
    assert forked["bytes"] == sum(len(FILES[p].encode()) for p in sorted(FILES)[:3])
    contamination = counted["contamination"]
    assert contamination["removed"] is False
    assert contamination["sources"]["fineweb"]["files"] == {
        "qa.jsonl": {"documents": 1, "bytes": len(WEB[5])}
    }
    assert contamination["sources"]["fineweb-edu"]["files"] == {
        "passage.txt": {"documents": 1, "bytes": len(EDU[3])}
    }
    assert set(contamination["sources"]) == {"fineweb", "fineweb-edu"}
    assert contamination["evaluation"]["files"]["qa.jsonl"]["texts"] == 2


def test_with_removal_each_planted_document_is_gone_and_nothing_else(planted, counted, tmp_path):
    output = tmp_path / "out"
    data = config(planted, output, run={"until": "sequences"}, dedup="exact")
    data["decontaminate"]["remove"] = True
    removed = prepare(make_config(data["sources"], output, **without(data, "sources"))).data
    assert removed["duplicates"]["removed"] is True
    assert removed["duplicates"]["sources"]["fineweb-edu"]["documents"] == 2
    skipped = {s: n["skipped"] for s, n in removed["sources"].items()}
    assert skipped["fineweb"]["duplicate"]["count"] == 1
    assert skipped["fineweb"]["contaminated"]["count"] == 1
    assert skipped["fineweb-edu"]["duplicate"]["count"] == 2
    assert skipped["fineweb-edu"]["contaminated"]["count"] == 1
    assert skipped["stack"]["duplicate"]["count"] == 4
    before, after = counted["packing"], removed["packing"]
    gone = {
        "fineweb-2023-50": [PADDED, WEB[5]],
        "fineweb-edu": [WEB[1], WEB[2], EDU[3]],
    }
    for domain, texts in gone.items():
        (length,) = after[domain]
        assert after[domain][length]["tokens_accounted"]
        was, now = before[domain][length], after[domain][length]
        assert was["documents_in"] - now["documents_in"] == len(texts)
        assert was["tokens_in"] - now["tokens_in"] == tokens(texts)
    assert removed["documents"]["stack"]["thestackv1_concat_by_repo"]["groups"] == 2
    assert counted["documents"]["stack"]["thestackv1_concat_by_repo"]["groups"] == 3


def test_documents_checkpoint_keeps_exactly_the_originals(planted, tmp_path, spark):
    output = tmp_path / "out"
    data = config(planted, output, run={"until": "documents"}, dedup={"mode": "exact"})
    data["decontaminate"]["remove"] = True
    prepare(make_config(data["sources"], output, **without(data, "sources")))
    rows = pq.read_table(output / "documents").to_pylist()
    texts = sorted(r["text"] for r in rows if r["source"] != "stack")
    expected = sorted(t for t in WEB + EDU if t not in (WEB[5], EDU[3]))
    assert texts == expected
    repositories = sorted(r["group"] for r in rows if r["source"] == "stack")
    assert repositories == ["org/a", "org/b"]


@pytest.mark.slow
def test_removal_gives_the_same_samples_whatever_the_partitioning(planted, tmp_path):
    runs = []
    for name, master, partitions in [("one", "local[1]", 1), ("two", "local[2]", 7)]:
        output = tmp_path / name
        data = config(planted, output, dedup="exact")
        data["spark"] = {
            "master": master,
            "conf": {**TEST_SPARK_CONF, "spark.sql.shuffle.partitions": partitions},
        }
        data["packing"]["partitions"] = partitions
        data["read_target_bytes"] = 2048 if partitions > 1 else 1 << 30
        result = prepare_cli(data, tmp_path, name)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads((output / "_report.json").read_text())
        assert report["duplicates"]["sources"]["stack"]["documents"] == 4
        assert "exact duplicates (removed" in result.stdout
        card = (output / "README.md").read_text()
        assert "| stack | 4 | 4 | 1 | 0 | not tokenized | 1 |" in card
        assert "| fineweb | qa.jsonl | 1 |" in card
        runs.append(sorted(p.read_bytes() for p in output.rglob("*.mds")))
    assert runs[0] == runs[1] and runs[0]


def test_the_spark_plan_and_the_in_memory_count_agree(counted, spark):
    from longmix.stages import dedup
    from longmix.stages.logic import duplicates as in_memory

    packed = Path(counted["outputs"]["sequences"]).parent
    rows = spark.read.parquet(str(packed)).where("row_type = 'hash'")
    hashes = rows.select(*dedup.HASH_COLUMNS)
    table = hashes.toArrow()

    def ordered(found) -> list[dict]:
        found = [r if isinstance(r, dict) else r.asDict() for r in found]
        return sorted(found, key=lambda r: sorted(r.items(), key=str))

    for priority in ([], ["fineweb-edu"]):
        copies = ordered(dedup.copy_counts(hashes, priority, 3))
        assert copies == ordered(in_memory.copy_counts(table, priority))
        groups = ordered(dedup.group_copy_counts(hashes, priority, 3))
        assert groups == ordered(in_memory.group_copy_counts(table, priority))
        assert [g["groups"] for g in groups] == [1]
        pairs = {(r["source"], r["original_source"]): r["documents"] for r in copies}
        edu_first = priority == ["fineweb-edu"]
        assert pairs[("fineweb", "fineweb-edu") if edu_first else ("fineweb-edu", "fineweb")] == 2

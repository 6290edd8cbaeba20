"""The direct pass (no shuffle) for sources that need no grouping: bins fixed by the input
list, the same samples whatever the executors, partitions and file order, every token
accounted for against the tokenizer's own counts, and each decoded segment found verbatim."""

import json
import random
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longmix.pipeline.config import parse_config
from longmix.pipeline.driver import prepare
from longmix.pipeline.specs import (
    DIRECT_BIN_BYTES,
    MIN_PIECE_BYTES,
    direct_bins,
    direct_pass,
    pass_buckets,
)
from longmix.pipeline.validate import validate
from longmix.stages.logic.read import ReadTask
from longmix.stages.logic.storage import StorageOptions
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import TEST_SPARK_CONF, cards_beside, make_config, prepare_cli
from tests.test_mds import fingerprint, stray_folders
from tests.test_pack_spark import PACKING as MIXED_PACKING
from tests.test_pack_spark import run_cli, samples
from tests.test_pack_spark import sources as mixed_sources

# The mixed corpus's packing and sources but its Stack repositories (which must shuffle).
PACKING = {
    **MIXED_PACKING,
    "buckets": 3,
    "domains": {
        domain: packing
        for domain, packing in MIXED_PACKING["domains"].items()
        if domain != "thestackv1_concat_by_repo"
    },
}


def sources(root, reverse=False):
    return {
        name: source
        for name, source in mixed_sources(root, reverse).items()
        if source.get("preset") != "stack"
    }


def settings(data: dict) -> object:
    return parse_config({"run": {"output": "out"}, **data})


def tasks(sizes: list[int]) -> list[ReadTask]:
    return [ReadTask("s", f"/in/f{i:03d}", f"f{i:03d}", size) for i, size in enumerate(sizes)]


def test_bins_follow_the_input_list_alone():
    plain = settings({"sources": {"s": {"format": "jsonl", "path": "x"}}})
    sizes = [random.Random(i).randint(1, DIRECT_BIN_BYTES) for i in range(40)]
    bins = direct_bins(plain, tasks(sizes))
    shuffled = tasks(sizes)
    random.Random(1).shuffle(shuffled)
    assert direct_bins(plain, shuffled) == bins  # the order files are listed in does not count
    assert len(bins) == -(-sum(sizes) // DIRECT_BIN_BYTES)  # one per DIRECT_BIN_BYTES
    assert sorted(t.relative for b in bins for t in b) == [t.relative for t in tasks(sizes)]
    four = direct_bins(plain, tasks(sizes * 4))
    assert len(four) >= 2 * len(bins)  # grows with the input
    assert len(direct_bins(plain, tasks([10, 20]))) == 1  # a small input: one task
    assert pass_buckets(plain, tasks(sizes)) == len(bins)
    fixed = settings(
        {"sources": {"s": {"format": "jsonl", "path": "x"}}, "packing": {"buckets": 64}}
    )
    assert len(direct_bins(fixed, tasks(sizes))) == 40  # never more than the files


def test_a_large_parquet_file_is_cut_into_pieces_other_files_are_not():
    def config(fmt):
        return settings({"sources": {"s": {"format": fmt, "path": "x"}}})

    large = tasks([10 * DIRECT_BIN_BYTES, DIRECT_BIN_BYTES // 2])
    bins = direct_bins(config("parquet"), large)
    pieces = sorted((t.relative, t.start, t.end) for b in bins for t in b)
    assert len(bins) == 11 == -(-sum(t.size for t in large) // DIRECT_BIN_BYTES)
    assert [p[1:] for p in pieces if p[0] == "f001"] == [(0, 0)]  # the small file whole
    cuts = [(start, end) for name, start, end in pieces if name == "f000"]
    assert len(cuts) >= 10 and cuts[0][0] == 0 and cuts[-1][1] == 10 * DIRECT_BIN_BYTES
    assert all(a[1] == b[0] for a, b in pairwise(cuts))  # no gap, no overlap
    assert len(direct_bins(config("jsonl"), large)) == 2  # JSON Lines files stay whole


def test_grouping_or_removing_copies_needs_the_shuffle():
    assert direct_pass(settings({"sources": {"s": {"format": "jsonl", "path": "x"}}}))
    assert not direct_pass(settings({"sources": {"s": {"preset": "stack", "path": "x"}}}))
    assert not direct_pass(
        settings({"sources": {"s": {"format": "jsonl", "path": "x"}}, "dedup": {"mode": "exact"}})
    )


@pytest.mark.slow
def test_same_samples_whatever_executors_partitions_and_file_order(tmp_path, mixed_corpus):
    one = run_cli(tmp_path, "one", mixed_corpus, "local[1]", 2, False, sources, PACKING)
    two = run_cli(tmp_path, "two", mixed_corpus, "local[2]", 11, True, sources, PACKING)
    for name in ("one", "two"):  # tasks and buckets are the bins, whatever the partitions
        report = json.loads((tmp_path / name / "_report.json").read_text())
        assert report["pass"] == {"buckets": 3, "tasks": 3, "shuffle": False}
    assert len(one) == len(two) > 20
    assert {r["domain"] for r in one} >= {"book", "arxiv", "ultrachat"}
    assert len({r["bucket"] for r in one}) == 3
    for a, b in zip(one, two, strict=True):
        assert a == b


@pytest.mark.slow
def test_one_parquet_file_read_in_pieces_by_several_tasks(tmp_path, spark):
    words = Path(__file__).read_text().split()
    rng = random.Random(3)
    texts = [" ".join(rng.choices(words, k=rng.randint(200, 2000))) for _ in range(400)]
    records = [{"text": t, "id": f"d{i}"} for i, t in enumerate(texts)]
    path = tmp_path / "mine.parquet"
    table = pa.Table.from_pylist(records)
    pq.write_table(table, path, row_group_size=50, compression="none", use_dictionary=False)
    assert path.stat().st_size > 3 * MIN_PIECE_BYTES
    own = {"mine": {"format": "parquet", "path": str(path), "domain": "web"}}
    packing = {"sequence_length": 4096, "buckets": 3}
    report = prepare(make_config(own, tmp_path / "out", packing=packing)).data
    assert report["pass"] == {"buckets": 3, "tasks": 3, "shuffle": False}
    assert report["sources"]["mine"]["domains"]["web"]["documents"] == len(texts)
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    packed = report["packing"]["web"]["4096"]
    assert packed["tokens_in"] == sum(len(tokenizer.encode_one(t)) for t in texts)
    assert packed["tokens_accounted"]


def test_every_token_accounted_and_found_in_its_source(tmp_path, mixed_corpus, spark):
    until = {"until": "sequences"}
    config = make_config(sources(mixed_corpus), tmp_path / "out", packing=PACKING, run=until)
    report = prepare(config).data
    assert report["pass"]["shuffle"] is False
    prepare(make_config(sources(mixed_corpus), tmp_path / "docs", run={"until": "documents"}))
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    documents = pq.read_table(tmp_path / "docs/documents").to_pylist()
    prose = [d for d in documents if d["kind"] != "chat"]
    for domain in ("book", "arxiv"):  # exactly the tokens the tokenizer gives each document
        want = sum(len(tokenizer.encode_one(d["text"])) for d in prose if d["domain"] == domain)
        packed = report["packing"][domain]
        assert sum(n["tokens_in"] for n in packed.values()) == want
        assert all(n["tokens_accounted"] for n in packed.values())
    texts = {
        domain: b"\x00".join(d["text"].encode() for d in prose if d["domain"] == domain)
        for domain in ("book", "arxiv")
    }
    specials, checked = {tokenizer.bos_id, tokenizer.eos_id}, 0
    for row in samples(tmp_path / "out"):
        if row["domain"] not in texts:
            continue
        ids, flat = row["input_ids"], row["indices"]
        for start, end in zip(flat[0::2], flat[1::2], strict=True):
            segment = [t for t in ids[start:end] if t not in specials]
            if segment:
                piece = tokenizer.encoding.decode_bytes(segment)
                assert piece in texts[row["domain"]], (row["domain"], piece[:80])
                checked += 1
    assert checked > 30


@pytest.mark.slow
def test_a_dying_task_and_speculation_leave_every_sample_exactly_once(tmp_path, mixed_corpus):
    def config(name, master, conf, faults=None):
        return {
            "run": {
                "name": name,
                "output": str(tmp_path / name),
                "seed": 3,
                "cards": cards_beside(tmp_path / name),
            },
            "spark": {"master": master, "conf": {**TEST_SPARK_CONF, **conf}},
            "sources": sources(mixed_corpus),
            "packing": PACKING,
            "mds": {"shard_size": 16384},
            **({"faults": faults} if faults else {}),
        }

    clean = prepare_cli(config("clean", "local[1]", {}), tmp_path, "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    faults = {"fail_once": f"{tmp_path / 'failed'}:3"}
    speculative = config("faulty", "local[2,4]", {"spark.speculation": True}, faults)
    result = prepare_cli(speculative, tmp_path, "faulty")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "failed").exists()  # the hook did kill an attempt mid-unit
    assert fingerprint(tmp_path / "faulty") == fingerprint(tmp_path / "clean")
    assert stray_folders(tmp_path / "faulty") == []
    assert validate(str(tmp_path / "faulty"), StorageOptions()).ok

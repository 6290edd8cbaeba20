"""Tokenize and pack on real Spark: byte-identical samples whatever the executors, partitions
and input file order; every decoded segment occurs verbatim in its source document."""

import json

import pyarrow.parquet as pq
import pytest

from longmix.pipeline.driver import prepare
from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from tests.conftest import TEST_SPARK_CONF, make_config, prepare_cli

PACKING = {
    "sequence_length": 512,
    "buckets": 5,
    "domains": {
        "thestackv1_concat_by_repo": {"mode": "long", "lengths": {1024: 0.5, 512: 0.5}},
        "book": {"mode": "long"},
        "arxiv": {"mode": "short", "method": "bfd"},
        "ultrachat": {"mode": "sft"},
    },
    "bfd_window_tokens": 4096,
}


def sources(root, reverse=False):
    stack = sorted(str(p) for p in (root / "stack").rglob("*.parquet"))
    sp = sorted(str(p) for p in (root / "sp").rglob("*.zst"))
    if reverse:
        stack, sp = stack[::-1], sp[::-1]
    return {
        "stack": {"preset": "stack", "path": stack},
        "slimpajama": {"preset": "slimpajama", "path": sp},
        "ultrachat": {"preset": "ultrachat", "path": str(root / "uc/*.parquet")},
    }


def samples(output):
    rows = pq.read_table(output / "_work/packed/row_type=sequence").to_pylist()
    return sorted(rows, key=lambda r: (r["domain"], r["seq_len"], r["bucket"], r["seq_no"]))


def run_cli(tmp_path, name, root, master, partitions, reverse, corpus=None, packing=None):
    """`prepare` to packed sequences with these executors, partitions and file order (of
    `corpus(root, reverse)`, by default `sources`); its samples."""
    config = {
        "run": {"name": name, "output": str(tmp_path / name), "seed": 5, "until": "sequences"},
        "spark": {
            "master": master,
            "conf": {**TEST_SPARK_CONF, "spark.sql.shuffle.partitions": partitions},
        },
        "sources": (corpus or sources)(root, reverse),
        "concat": {"partitions": partitions},
        "packing": {**(packing or PACKING), "partitions": partitions},
        "read_target_bytes": 40_000 if reverse else 10**9,
    }
    result = prepare_cli(config, tmp_path, name)
    assert result.returncode == 0, result.stderr[-3000:]
    return samples(tmp_path / name)


@pytest.mark.slow
def test_same_samples_whatever_executors_partitions_and_file_order(tmp_path, mixed_corpus):
    one = run_cli(tmp_path, "one", mixed_corpus, "local[1]", 3, reverse=False)
    two = run_cli(tmp_path, "two", mixed_corpus, "local[2]", 17, reverse=True)
    assert len(one) == len(two) > 20
    assert {r["domain"] for r in one} >= {"thestackv1_concat_by_repo", "book", "arxiv", "ultrachat"}
    for a, b in zip(one, two, strict=True):
        assert a == b


def test_decoded_segments_occur_verbatim_in_their_sources(tmp_path, mixed_corpus, spark):
    until = {"until": "sequences"}
    config = make_config(sources(mixed_corpus), tmp_path / "out", packing=PACKING, run=until)
    report = prepare(config).data
    prepare(make_config(sources(mixed_corpus), tmp_path / "docs", run={"until": "documents"}))
    assert all(
        n["tokens_accounted"] for lengths in report["packing"].values() for n in lengths.values()
    )
    best_fit, concatenated = report["packing"]["arxiv"]["512"], report["packing"]["ultrachat"]
    assert best_fit["padding_tokens"] > 0 and "final_partial" not in best_fit["dropped"]
    for numbers in (best_fit, *concatenated.values()):
        rates = numbers["truncation_rate"]
        assert rates["bfd"] <= rates["concat"] and rates["concat"] > 0
    tokenizer = load_tokenizer(TokenizerSpec("tiktoken", "llama3"))
    specials = {tokenizer.bos_id, tokenizer.eos_id}
    documents = pq.read_table(tmp_path / "docs/documents").to_pylist()
    texts: dict[str, bytes] = {}
    for doc in documents:
        text = doc["text"]
        if doc["kind"] == "chat":
            text = "\x00".join("\n\n" + m["content"] for m in json.loads(text))
        texts[doc["domain"]] = texts.get(doc["domain"], b"") + b"\x00" + text.encode()
    checked = 0
    for row in samples(tmp_path / "out"):
        ids, flat = row["input_ids"], row["indices"]
        assert len(ids) == row["seq_len"]
        for start, end in zip(flat[0::2], flat[1::2], strict=True):
            segment = [t for t in ids[start:end] if t not in specials]
            if row["domain"] == "ultrachat":
                mask = row["mask"][start:end]
                trained = [t for t, m in zip(ids[start:end], mask, strict=True) if m and t < 128000]
                segment = trained
            if not segment:
                continue
            piece = tokenizer.encoding.decode_bytes(segment)
            assert piece in texts[row["domain"]], (row["domain"], piece[:80])
            checked += 1
    assert checked > 50


def test_each_bucket_lands_in_its_own_partition(spark):
    """Spark's own hash agrees with `murmur3_int`, and the pass's key sends bucket b to
    partition b mod n: every partition gets its share of the buckets, none more."""
    from pyspark.sql import functions as F

    from longmix.stages.partitioning import bucket_key, murmur3_int

    values = spark.range(-5, 300).select(F.col("id").cast("int").alias("v"), F.hash("v").alias("h"))
    assert all(murmur3_int(row.v) == row.h for row in values.collect())
    for buckets, partitions in ((13, 13), (64, 4), (5, 8)):
        rows = (
            spark.range(buckets * 20)
            .select((F.col("id") % buckets).cast("int").alias("bucket"))
            .repartition(partitions, bucket_key(F.col("bucket"), buckets, partitions))
            .select("bucket", F.spark_partition_id().alias("partition"))
            .distinct()
            .collect()
        )
        assert sorted((r.bucket, r.partition) for r in rows) == [
            (b, b % partitions) for b in range(buckets)
        ]

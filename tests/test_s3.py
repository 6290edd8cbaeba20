"""An S3-API server on loopback: reading inputs from it, and writing the MDS output to it,
give the same results as local disk."""

import os

import pyarrow.parquet as pq

from longmix.pipeline import corpus
from longmix.pipeline.demo import package_files
from longmix.pipeline.driver import prepare
from longmix.pipeline.validate import validate
from longmix.stages.logic.storage import StorageOptions, expand
from tests.conftest import download_tree, make_config, upload_tree


def build(root):
    files = [(f"org/r{k % 3}", p, t) for k, (p, t) in enumerate(package_files("yaml"))]
    corpus.write_stack(root / "stack", files, shards=3)
    books = [
        corpus.slimpajama_record(f"book {i}: " + "words " * (50 + i), "RedPajamaBook")
        for i in range(30)
    ]
    corpus.write_jsonl(root / "sp/train/chunk1/example_train_0.jsonl.zst", [*books, b"{bad"])


def sources(base):
    return {
        "stack": {"preset": "stack", "path": f"{base}/stack/data/*/*.parquet"},
        "slimpajama": {"preset": "slimpajama", "path": f"{base}/sp/train/chunk*/*.jsonl.zst"},
    }


def sequences(path):
    rows = pq.read_table(path / "_work/packed/row_type=sequence").to_pylist()
    return sorted(rows, key=lambda r: (r["domain"], r["seq_len"], r["bucket"], r["seq_no"]))


def test_s3_input_matches_local(tmp_path, s3_client, s3_endpoint, spark):
    build(tmp_path / "corpus")
    upload_tree(s3_client, tmp_path / "corpus", "raw", "corpora")
    listed = expand("s3://raw/corpora/stack/data/*/*.parquet", StorageOptions(s3_endpoint))
    assert [e.relative for e in listed] == [
        f"python/train-0000{k}-of-00003.parquet" for k in range(3)
    ]
    packing, run = {"sequence_length": 128}, {"until": "sequences"}
    local = prepare(
        make_config(sources(tmp_path / "corpus"), tmp_path / "local", packing=packing, run=run)
    ).data
    remote = prepare(
        make_config(
            sources("s3://raw/corpora"),
            tmp_path / "remote",
            storage={"s3_endpoint_url": s3_endpoint},
            packing=packing,
            run=run,
        )
    ).data
    assert len(sequences(tmp_path / "local")) > 3
    assert sequences(tmp_path / "local") == sequences(tmp_path / "remote")
    assert local["packing"] == remote["packing"]
    assert local["documents"] == remote["documents"]
    assert remote["sources"]["slimpajama"]["skipped"]["invalid_json"]["count"] == 1
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    for name in ("_report.json", "config.resolved.yaml"):
        assert secret not in (tmp_path / "remote" / name).read_text()


def test_glob_matching_on_s3(s3_client, s3_endpoint, tmp_path):
    for name in ("a/x.parquet", "a/b/y.parquet", "a/z.json", "c/w.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    upload_tree(s3_client, tmp_path, "globs", "p")
    options = StorageOptions(s3_endpoint)
    assert [e.relative for e in expand("s3://globs/p/a/*.parquet", options)] == ["x.parquet"]
    assert [e.relative for e in expand("s3://globs/p/a/**/*.parquet", options)] == [
        "b/y.parquet",
        "x.parquet",
    ]
    assert [e.relative for e in expand("s3://globs/p/a", options)] == [
        "b/y.parquet",
        "x.parquet",
        "z.json",
    ]
    assert expand("s3://globs/p/none/*.parquet", options) == []


def test_mds_output_on_s3_matches_local_and_validates(tmp_path, s3_client, s3_endpoint, spark):
    """Shards uploaded by the tasks, units claimed with conditional PUTs, indexes merged on
    S3; the samples are the local run's, and `validate` reads them back from S3."""
    from tests.test_mds import fingerprint

    build(tmp_path / "corpus")
    s3_client.create_bucket(Bucket="shards")
    packing = {"sequence_length": 128, "buckets": 3}
    mds = {"shard_size": 20_000}
    local = prepare(
        make_config(sources(tmp_path / "corpus"), tmp_path / "local", packing=packing, mds=mds)
    ).data
    remote = prepare(
        make_config(
            sources(tmp_path / "corpus"),
            "s3://shards/run",
            run={"scratch": str(tmp_path / "scratch")},
            storage={"s3_endpoint_url": s3_endpoint},
            packing=packing,
            mds=mds,
        )
    ).data
    assert remote["mix"] == local["mix"]
    result = validate("s3://shards/run", StorageOptions(s3_endpoint))
    assert result.ok, result.failures[:5]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket="shards")["Contents"]]
    assert "run/mix.yaml" in keys and not [k for k in keys if "/_work/" in k]
    downloaded = download_tree(s3_client, "shards", "run", tmp_path / "downloaded")
    assert fingerprint(downloaded) == fingerprint(tmp_path / "local")
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    for name in ("_report.json", "config.resolved.yaml", "mix.yaml"):
        assert secret not in (downloaded / name).read_text()


def test_stats_of_an_mds_dataset_on_s3(tmp_path, s3_client, s3_endpoint):
    from longmix.pipeline.stats import load_stats
    from tests.test_validate import build

    root = build(tmp_path / "local")
    upload_tree(s3_client, root, "stats", "run")
    local = load_stats(str(root / "web"))
    remote = load_stats("s3://stats/run/web", storage=StorageOptions(s3_endpoint))
    assert remote["histograms"]["packed"] == local["histograms"]["packed"]
    # Each sample holds segments of 10 and 22 tokens (bins [8, 16) and [16, 32)).
    assert remote["histograms"]["packed"]["web"] == {
        "4": {"documents": 12, "tokens": 120},
        "5": {"documents": 12, "tokens": 264},
    }

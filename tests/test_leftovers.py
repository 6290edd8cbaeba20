"""The buckets' partial sequences are packed on the driver when they surely fit
(`leftovers_fit_driver`), else by Spark tasks: the same MDS shards, samples and report
either way."""

from __future__ import annotations

import json

import pytest

from longmix.pipeline.driver import prepare
from longmix.stages import leftovers
from longmix.stages.logic.pack import PackSpec
from tests.conftest import make_config
from tests.test_mds import MIX, fingerprint, shard_hashes
from tests.test_pack_spark import PACKING, sources


def test_partials_fit_the_driver_by_their_bound_alone():
    specs = {("code", 65536): PackSpec(mode="long", length=65536)}
    assert leftovers.leftovers_fit_driver(specs, 64)  # 64 x 64K x 5 bytes: 20 MB
    assert not leftovers.leftovers_fit_driver(specs, 2000)  # 655 MB
    specs[("code", 524288)] = PackSpec(mode="long", length=524288)
    assert not leftovers.leftovers_fit_driver(specs, 128)


@pytest.mark.slow
def test_driver_and_spark_tasks_pack_the_leftovers_into_the_same_shards(
    tmp_path, mixed_corpus, spark, monkeypatch
):
    calls = []
    on_driver = leftovers.pack_leftovers_on_driver
    spark_tasks = leftovers.pack_leftovers
    monkeypatch.setattr(
        leftovers,
        "pack_leftovers_on_driver",
        lambda *a, **k: calls.append("driver") or on_driver(*a, **k),
    )
    monkeypatch.setattr(
        leftovers, "pack_leftovers", lambda *a, **k: calls.append("spark") or spark_tasks(*a, **k)
    )

    def run(name: str):
        output = tmp_path / name
        prepare(make_config(sources(mixed_corpus), output, packing=PACKING, mix=MIX))
        return output, json.loads((output / "_report.json").read_text())

    here, here_report = run("driver")
    monkeypatch.setattr(leftovers, "DRIVER_LEFTOVER_BYTES", 0)
    there, there_report = run("spark")
    assert calls == ["driver", "spark"]
    assert shard_hashes(here) == shard_hashes(there)
    assert fingerprint(here) == fingerprint(there)
    assert here_report["packing"] == there_report["packing"]
    assert here_report["duplicates"] == there_report["duplicates"]
    assert (here / "mix.yaml").read_text() == (there / "mix.yaml").read_text()
    # the leftovers' units, numbered after the last bucket, are among the output's
    leftover_unit = f"b{PACKING['buckets']:05d}-"
    assert any(p.name.startswith(leftover_unit) for p in here.glob("*/*"))


def test_the_pass_rows_read_here_equal_those_spark_reads(tmp_path, spark):
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    from longmix.pipeline.driver import pass_rows_table
    from longmix.stages.logic.schemas import SEQUENCE_SCHEMA

    def row(kind: str, k: int) -> dict:
        values = dict.fromkeys(SEQUENCE_SCHEMA.names)
        ids = list(range(k, k + 5))
        return {
            **values,
            "row_type": kind,
            "domain": "d",
            "seq_len": 5,
            "bucket": k,
            "input_ids": ids,
            "indices": [0, 5],
            "tally": f"t{k}",
            "hash": bytes([k]),
        }

    rows = [row(kind, k) for k, kind in enumerate(["tally", "commit", "partial", "hash"] * 3)]
    frame = spark.createDataFrame(
        pa.Table.from_pylist(rows, SEQUENCE_SCHEMA).to_pandas(),
        from_arrow_schema(SEQUENCE_SCHEMA),
    )
    uri = str(tmp_path / "packed")
    frame.write.partitionBy("row_type").parquet(uri)
    kinds = ["tally", "partial"]
    here = pass_rows_table(spark, uri, kinds)
    there = pass_rows_table(spark, f"file://{uri}", kinds)
    assert here.schema == there.schema == SEQUENCE_SCHEMA
    order = [("bucket", "ascending")]
    assert here.sort_by(order).to_pylist() == there.sort_by(order).to_pylist()
    assert sorted(here.column("bucket").to_pylist()) == [0, 2, 4, 6, 8, 10]

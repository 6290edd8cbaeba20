"""Warmed Python workers: the tasks after `warm_workers` find the tokenizer loaded in their
worker (Spark reuses Python workers), so the first read and packing tasks do not load it."""

from __future__ import annotations

from functools import partial

from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer
from longmix.stages.warmup import warm_task, warm_workers

# A spec no other test loads (the cache is keyed by it), so only the warm-up can load it.
SPEC = TokenizerSpec(backend="tiktoken", name="cl100k_base", threads=7)


def test_warm_task_loads_the_tokenizer_and_yields_nothing():
    spec = TokenizerSpec(backend="tiktoken", name="cl100k_base", threads=5)
    assert list(warm_task(iter([]), spec)) == []
    before = load_tokenizer.cache_info().hits
    load_tokenizer(spec)
    assert load_tokenizer.cache_info().hits == before + 1


def test_tasks_after_the_warm_up_find_the_tokenizer_loaded(spark):
    def loaded_already(batches, spec: TokenizerSpec):  # nested: shipped by value
        import pyarrow as pa

        from longmix.stages.logic.tokenizers import load_tokenizer

        before = load_tokenizer.cache_info().hits
        load_tokenizer(spec)
        for _ in batches:
            pass
        yield pa.record_batch({"hit": [load_tokenizer.cache_info().hits > before]})

    warm_workers(spark, SPEC)
    slots = spark.sparkContext.defaultParallelism
    found = spark.range(slots, numPartitions=slots).mapInArrow(
        partial(loaded_already, spec=SPEC), "hit boolean"
    )
    assert [row.hit for row in found.collect()] == [True] * slots

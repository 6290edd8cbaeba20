"""Buckets spread evenly over the pass's partitions: Spark's hash partitioner sends a row to
partition `pmod(murmur3(key, 42), n)`, so a bucket's rows get as key an int whose hash lands
them in partition `bucket mod n` (a plain `repartition(n, "bucket")` leaves about a third of
n partitions empty when there are n buckets, and doubles others)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

SEED = 42  # Spark's HashPartitioning seed


def rotate(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & 0xFFFFFFFF


def murmur3_int(value: int, seed: int = SEED) -> int:
    """Spark's `Murmur3_x86_32.hashInt` (what `hash(int_column)` returns), signed."""
    k = (value & 0xFFFFFFFF) * 0xCC9E2D51 & 0xFFFFFFFF
    k = rotate(k, 15) * 0x1B873593 & 0xFFFFFFFF
    h = rotate(seed ^ k, 13) * 5 + 0xE6546B64 & 0xFFFFFFFF
    h ^= 4
    h = (h ^ (h >> 16)) * 0x85EBCA6B & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * 0xC2B2AE35 & 0xFFFFFFFF
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_keys(partitions: int) -> list[int]:
    """For each partition p, the smallest non-negative int whose hash lands in p."""
    keys: list[int | None] = [None] * partitions
    left, candidate = partitions, 0
    while left:
        slot = murmur3_int(candidate) % partitions
        if keys[slot] is None:
            keys[slot], left = candidate, left - 1
        candidate += 1
    return [k for k in keys if k is not None]


def bucket_key(bucket: Column, buckets: int, partitions: int) -> Column:
    """The int to repartition by (into `partitions`) so that bucket b is partition
    b mod `partitions`: each partition gets its share of the buckets, none more."""
    keys = partition_keys(partitions)
    by_bucket = F.array(*(F.lit(keys[b % partitions]) for b in range(buckets)))
    return F.element_at(by_bucket, bucket + 1)

"""The config turned into what the stages run with: source, tokenizer, packing and MDS specs,
and the output directory of every (domain, length). The only place that does."""

from __future__ import annotations

import math

from longmix.pipeline.config import Config, TokenizerConfig
from longmix.stages.logic.faults import Faults
from longmix.stages.logic.mds import MdsSpec
from longmix.stages.logic.mix import directory_name
from longmix.stages.logic.pack import PackSpec, carries_mask
from longmix.stages.logic.read import ReadTask, plan_bins
from longmix.stages.logic.schemas import SpecKey
from longmix.stages.logic.sequences import SequencePlan
from longmix.stages.logic.sources import PRESETS, SourceSpec
from longmix.stages.logic.storage import StorageOptions
from longmix.stages.logic.tokenizers import Tokenizer, TokenizerSpec


def storage_options(config: Config) -> StorageOptions:
    return StorageOptions(config.storage.s3_endpoint_url, config.storage.s3_region)


def source_specs(config: Config) -> dict[str, SourceSpec]:
    """Each source's preset with its overrides applied, or its own fields for a source
    without a preset."""
    specs = {}
    for name, source in config.sources.items():
        fields = source.model_dump(exclude=CARD_ONLY | {"preset", "path"}, exclude_none=True)
        if source.preset is None:
            specs[name] = SourceSpec.generic(name, **fields)
        else:
            specs[name] = PRESETS[source.preset].with_overrides(name=name, **fields)
    return specs


# What a source config says for the data card only, not how to read it.
CARD_ONLY = {"license", "origin", "language"}


def faults(config: Config) -> Faults:
    return Faults(**config.faults.model_dump())


def tokenizer_spec(tokenizer: TokenizerConfig, task_cpus: int) -> TokenizerSpec:
    # Twice the task's cores: when a stage's last tasks run alone (a huge repository's
    # parts), their spare threads use the cores the finished tasks left idle (measured:
    # 28.3 s instead of 31.3 s end to end on 2 cores; 4 threads was slower again).
    fields = tokenizer.model_dump()
    fields["threads"] = tokenizer.threads or 2 * task_cpus
    return TokenizerSpec(**fields)


def produced_domains(config: Config) -> list[str]:
    return sorted({d for source in source_specs(config).values() for d in source.domains})


def spec_keys(config: Config) -> list[SpecKey]:
    """Every (domain, length) the sources can fill."""
    return [
        (domain, length)
        for domain in produced_domains(config)
        for length in config.packing.lengths(domain)
    ]


def pack_specs(config: Config, tokenizer: Tokenizer) -> dict[SpecKey, PackSpec]:
    specs = {}
    for domain, length in spec_keys(config):
        packing = config.packing.for_domain(domain)
        specs[(domain, length)] = PackSpec(
            mode=packing.mode,
            length=length,
            min_length=length if packing.min_length is None else packing.min_length,
            bos=tokenizer.bos_id,
            eos=tokenizer.eos_id,
            method=packing.method,
            window_tokens=config.packing.bfd_window_tokens,
        )
    return specs


def sequence_plan(config: Config, spec: TokenizerSpec, tokenizer: Tokenizer) -> SequencePlan:
    packs = pack_specs(config, tokenizer)
    return SequencePlan(
        sources=source_specs(config),
        max_document_bytes=config.concat.max_document_bytes,
        tokenizer=spec,
        packs=packs,
        lengths={domain: config.packing.lengths(domain) for domain, _ in packs},
        seed=config.run.seed,
        thresholds=config.stats.all_thresholds(),
    )


# Input bytes per bin of the direct pass: a 40 MB input runs in 3 tasks, 160 MB in 10. A task
# costs Spark about 0.1 s of a core however small (measured: 4 MB bins made a 160 MB run 2.6 s
# slower on 2 cores than 16 MB ones; benchmarks/RESULTS.md).
DIRECT_BIN_BYTES = 16_000_000
# The smallest piece a parquet file is cut into (when `packing.buckets` asks for many bins).
MIN_PIECE_BYTES = 1_000_000


def packing_buckets(config: Config, input_bytes: int) -> int:
    """The pass's buckets: `packing.buckets`, else 2 x sqrt(input MB), at least 64. A bucket's
    content depends on the seed and the bucket count alone, so a given input packs the same
    on any cluster; the count grows slower than the input to keep the leftovers (one partial
    sequence per bucket and (domain, length)) small: 64 up to 1 GB, 2,000 (of 500 MB) at 1 TB."""
    if config.packing.buckets:
        return config.packing.buckets
    return max(64, math.ceil(2 * math.sqrt(input_bytes / 1e6)))


def direct_pass(config: Config) -> bool:
    """Whether the pass runs without a shuffle (`stages.direct`): no source concatenates
    records into documents and no exact duplicate is removed before packing, so no record
    needs to meet one from another file."""
    concatenated = any(spec.concatenated for spec in source_specs(config).values())
    return not concatenated and config.dedup.mode != "exact"


def direct_bins(config: Config, tasks: list[ReadTask]) -> list[list[ReadTask]]:
    """The direct pass's bins, one bucket each: `packing.buckets` bins, else one per
    DIRECT_BIN_BYTES of input up to `packing_buckets`; never more than the files and pieces.
    A parquet file larger than a bin's share (at least MIN_PIECE_BYTES) is cut into pieces of
    about that size (row groups are never split); other files stay whole. The bins depend on
    the input list alone (not on executors, partitions or `read_target_bytes`), so a given
    input packs the same on any cluster."""
    input_bytes = sum(t.size for t in tasks)
    count = config.packing.buckets or min(
        packing_buckets(config, input_bytes), max(1, math.ceil(input_bytes / DIRECT_BIN_BYTES))
    )
    share = max(MIN_PIECE_BYTES, math.ceil(input_bytes / count))
    parquet = {name for name, spec in source_specs(config).items() if spec.format == "parquet"}
    pieces = [
        piece
        for task in tasks
        for piece in (task.pieces(-(-task.size // share)) if task.source in parquet else [task])
    ]
    return plan_bins(pieces, max(1, input_bytes), min_bins=count)


def pass_buckets(config: Config, tasks: list[ReadTask]) -> int:
    """The pass's buckets: the direct pass's bins, else `packing_buckets`."""
    if direct_pass(config):
        return len(direct_bins(config, tasks))
    return packing_buckets(config, sum(t.size for t in tasks))


def pass_tasks(config: Config, input_bytes: int, buckets: int, cores: int) -> int:
    """Tasks of the shuffled pass: `packing.partitions`, else one per 2 MB of input (at least
    two per core, at most one per bucket). Tasks never change what is packed, only how the
    buckets are shared out, so they may follow the cluster; they grow with the input."""
    if config.packing.partitions:
        return config.packing.partitions
    return min(buckets, max(2 * cores, math.ceil(input_bytes / 2e6)))


def directory_for(config: Config, domain: str, length: int) -> str:
    packing = config.packing.for_domain(domain)
    suffixed = packing.mode == "long" or len(config.packing.lengths(domain)) > 1
    return directory_name(domain, length, suffixed)


def directories(config: Config) -> dict[SpecKey, str]:
    return {key: directory_for(config, *key) for key in spec_keys(config)}


def mds_spec(config: Config, root: str, digest: str) -> MdsSpec:
    masked = {
        directory
        for (domain, _), directory in directories(config).items()
        if carries_mask(
            config.packing.for_domain(domain).mode, config.packing.for_domain(domain).method
        )
    }
    return MdsSpec(
        root=root,
        storage=storage_options(config),
        indices_dtype=config.mds.indices_dtype,
        compression=config.mds.compression,
        shard_size=config.mds.shard_size,
        masked=frozenset(masked),
        digest=digest,
        faults=faults(config),
    )

"""The job driver: `longmix prepare CONFIG` or `spark-submit pipeline/main.py CONFIG`.

It lists the inputs, builds the Spark plan from the stages, runs it, and writes the run
report and the resolved config beside the output. It never touches document text itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.card import VALIDATION_FILE, write_card
from pipeline.config import Config
from pipeline.errors import LongmixError
from pipeline.lock import run_lock
from pipeline.mixfile import MIX_FILE, mix_section, write_mix_file
from pipeline.ownership import (
    claim_folder,
    inside,
    normalized,
    refuse_foreign_card,
    refuse_overlap,
)
from pipeline.report import INPUTS_FILE, REPORT_FILE, RunReport
from pipeline.spark import build_session
from pipeline.stats import STATS_FILE, stats_section
from pipeline.summary import documents_section, packing_section, sources_section
from pipeline.trainer.report import SMOKE_FILE
from stages.logic.documents import (
    DOCUMENT_TALLY_COLUMNS,
    READ_TALLY_COLUMNS,
    count_document,
    count_record,
)
from stages.logic.errors import user_message
from stages.logic.mds import PASS_MARKER, MdsSpec, clear_stale, committed, publish
from stages.logic.mix import MixError, MixTarget, directory_name, plan_mix
from stages.logic.pack import PackSpec, SpecKey
from stages.logic.read import ReadTask
from stages.logic.sequences import SequencePlan
from stages.logic.storage import (
    StorageOptions,
    delete_file,
    exists,
    expand,
    is_s3,
    join,
    read_text,
    write_text,
)
from stages.logic.tally import Tally
from stages.logic.tokenize import chat_problem
from stages.logic.tokenizers import Tokenizer, TokenizerError, load_tokenizer

DOCUMENTS_DIR = "documents"
# A document can be tens of MB: parquet's min/max statistics and dictionary attempt would
# each copy such a value on the JVM heap, so both are off for the text column. Parquet checks
# a page's size only every so many rows, estimated from the rows so far: pages of 121 MB
# of text ran the JVM out of heap (2.4 GB corpus at `run.until: documents`, 1 GB heap). It
# checks after every row here, so a page holds at most one document beyond its 1 MB.
TEXT_PARQUET_OPTIONS = {
    "parquet.column.statistics.enabled#text": "false",
    "parquet.enable.dictionary#text": "false",
    "parquet.block.size": str(16 * 1024 * 1024),
    "parquet.page.size.row.check.min": "1",
    "parquet.page.size.check.estimate": "false",
    "compression": "zstd",
}
PACKED_DIR = "packed"
PACKED_MARKER = "_packed.json"
SHARDS_DIR = "shards"  # under scratch: every packed sequence once, when the mix is materialized


def storage_options(config: Config) -> StorageOptions:
    return StorageOptions(config.storage.s3_endpoint_url, config.storage.s3_region)


def discover(config: Config, storage: StorageOptions) -> list[ReadTask]:
    """Every input file of every source; only names and sizes reach the driver.

    A file's `relative` name (which document ids carry) is its path under the deepest folder
    shared by all files of its source: unique within the source, and the same for the same
    layout on local disk and on S3."""
    tasks = []
    for name, source in config.sources.items():
        entries = {}
        for pattern in source.paths():
            found = expand(config.resolve(pattern), storage)
            if not found:
                raise LongmixError(f"source {name!r}: no files match {pattern}")
            entries.update({entry.uri: entry for entry in found})
        common = common_folder(list(entries))
        tasks += [
            ReadTask(name, uri, uri[len(common) :].lstrip("/"), entry.size, entry.modified)
            for uri, entry in sorted(entries.items())
        ]
    return tasks


def common_folder(uris: list[str]) -> str:
    parts = [uri.split("/")[:-1] for uri in uris]
    shared = parts[0]
    for other in parts[1:]:
        size = next(
            (i for i, (a, b) in enumerate(zip(shared, other, strict=False)) if a != b), None
        )
        shared = shared[: min(len(shared), len(other)) if size is None else size]
    return "/".join(shared)


def prepare(config: Config, master: str | None = None) -> RunReport:
    """Run the pipeline up to `run.until` (documents, packed sequences, or the MDS mix);
    write the report and the resolved config beside the output. A run that finished with the
    same config is not run again; one that was killed resumes from what it committed.
    Everything the config reveals is checked before Spark starts, and the output is held
    by one run at a time."""
    storage = storage_options(config)
    refuse_before_work(config, storage)
    with run_lock(config.output, storage):
        finished = finished_report(config, storage)
        if finished is not None:
            return finished
        report = RunReport(config.run.name, config.digest())
        with report.stage("discover"):
            tasks = discover(config, storage)
        report["input"] = {"files": len(tasks), "bytes": sum(t.size for t in tasks)}
        if config.run.until != "documents":
            preflight_tokenizer(config)
        spark = build_session(config.spark, master)
        try:
            report["outputs"] = run_stages(spark, config, tasks, report)
        except Exception as exc:
            problem = task_failure(exc)
            if problem is None:
                raise
            raise problem from None
        write_results(config, report, tasks, storage)
    return report


def refuse_before_work(config: Config, storage: StorageOptions) -> None:
    """What the config alone shows to be wrong, and folders longmix does not own, refused
    before anything is written; then the output (and a separate scratch) marked as longmix's."""
    output = config.output
    if is_s3(output) and config.run.until != "mds":
        raise LongmixError(
            f"run.until: {config.run.until} writes parquet with Spark, which cannot write "
            "s3:// here; give a local or cluster path, or run until mds"
        )
    refuse_unmixable(config)
    inputs = {name: [config.resolve(p) for p in s.paths()] for name, s in config.sources.items()}
    refuse_overlap(inputs, {"output": output, "scratch": config.scratch})
    if config.run.until == "mds" and not is_s3(output):
        for card in card_paths(config):
            refuse_foreign_card(card)
    claim_folder(output, storage, "output")
    local_scratch = "://" not in config.scratch  # hdfs:// and the like: Spark's to check
    if local_scratch and not inside(normalized(config.scratch), normalized(output)):
        claim_folder(config.scratch, StorageOptions(), "run.scratch")


def refuse_unmixable(config: Config) -> None:
    """Mix domains that no source produces would fail only after packing."""
    produced = {d for source in config.source_specs().values() for d in source.domains}
    missing = sorted({domain for domain, _ in config.mix.fractions()} - produced)
    if missing:
        raise LongmixError(
            f"mix.domains names {', '.join(missing)}, which no source produces "
            f"(the sources produce {', '.join(sorted(produced))})"
        )


def preflight_tokenizer(config: Config) -> None:
    """The tokenizer loads here, and renders chats if a source has them, before any data."""
    task_cpus = int(config.spark.conf.get("spark.task.cpus", 1))
    try:
        tokenizer = load_tokenizer(config.tokenizer.spec(task_cpus))
    except TokenizerError as exc:
        raise LongmixError(str(exc)) from None
    chats = sorted(n for n, s in config.source_specs().items() if s.kind == "chat")
    problem = chat_problem(tokenizer) if chats else None
    if problem:
        raise LongmixError(f"{problem} (chat sources: {', '.join(chats)})")


def task_failure(exc: BaseException) -> LongmixError | None:
    """The one line a failed Spark job means for the user, when it can be stated."""
    text = str(exc)
    message = user_message(text)
    if message:
        return LongmixError(message)
    if "No space left on device" in text:
        return LongmixError("disk full (no space left on device) while Spark tasks wrote data")
    return None


def run_stages(spark, config: Config, tasks: list[ReadTask], report: RunReport) -> dict:
    if config.run.until == "documents":
        return write_documents(spark, config, read(spark, config, tasks), report)
    if config.run.until == "mds":
        return write_output(spark, config, tasks, report)
    return packed_sequences(spark, config, tasks, report)


def write_results(
    config: Config, report: RunReport, tasks: list[ReadTask], storage: StorageOptions
) -> None:
    output = config.output
    listing = "".join(f"{t.uri}\t{t.size}\t{t.modified}\n" for t in tasks)
    write_text(join(output, INPUTS_FILE), "uri\tbytes\tmodified\n" + listing, storage)
    write_text(
        join(output, "config.resolved.yaml"),
        yaml.safe_dump(config.redacted(), sort_keys=False),
        storage,
    )
    if "stats" in report.data:
        stats = json.dumps(report.data.pop("stats"), indent=1, sort_keys=True)
        write_text(join(output, STATS_FILE), stats + "\n", storage)
    write_text(join(output, REPORT_FILE), report.to_json() + "\n", storage)
    if config.run.until == "mds" and not is_s3(output):
        report["card"] = str(write_card(Path(output), Path(config.resolve(config.run.cards))))


def card_paths(config: Config) -> list[Path]:
    """Where a run's data card goes: its cards folder and beside the output."""
    return [
        Path(config.resolve(config.run.cards)) / config.run.name / "README.md",
        Path(config.output) / "README.md",
    ]


def finished_report(config: Config, storage: StorageOptions) -> RunReport | None:
    """The saved report of a finished run with this very config, if there is one."""
    uri = join(config.output, REPORT_FILE)
    if not exists(uri, storage):
        return None
    saved = json.loads(read_text(uri, storage))
    if saved.get("config_sha256") != config.digest() or "outputs" not in saved:
        return None
    report = RunReport(config.run.name, config.digest())
    report.data = {**saved, "already_complete": True}
    return report


def read(spark, config: Config, tasks: list[ReadTask]):
    from stages.read import read_sources

    storage = storage_options(config)
    return read_sources(
        spark, tasks, config.source_specs(), storage, config.run.strict, config.read_target_bytes
    )


def write_documents(spark, config: Config, records, report: RunReport) -> dict[str, str]:
    """The concatenated documents as parquet: a checkpoint to inspect, not the fast path."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from stages.concat import concatenate
    from stages.tally import collect_tally

    records = records.persist(StorageLevel.DISK_ONLY)
    with report.stage("read"):
        read = collect_tally(records, READ_TALLY_COLUMNS, count_record)
    documents = concatenate(
        records.where(F.col("skip_reason").isNull()),
        config.source_specs(),
        config.run.seed,
        config.concat.max_document_bytes,
        config.concat.partitions or spark.sparkContext.defaultParallelism * 2,
    )
    uri = join(config.output, DOCUMENTS_DIR)
    with report.stage("concatenate_and_write"):
        documents.write.options(**TEXT_PARQUET_OPTIONS).mode("overwrite").parquet(uri)
    records.unpersist()
    with report.stage("summarize"):
        written = collect_tally(spark.read.parquet(uri), DOCUMENT_TALLY_COLUMNS, count_document)
    report["sources"] = sources_section(read)
    report["documents"] = documents_section(written)
    return {"documents": uri}


def spec_keys(config: Config) -> list[SpecKey]:
    """Every (domain, length) the sources can fill."""
    domains = sorted({d for source in config.source_specs().values() for d in source.domains})
    return [(domain, length) for domain in domains for length in config.packing.lengths(domain)]


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


def sequence_plan(spark, config: Config, report: RunReport) -> SequencePlan:
    spec = config.tokenizer.spec(int(spark.conf.get("spark.task.cpus", "1")))
    try:
        tokenizer = load_tokenizer(spec)
    except TokenizerError as exc:
        raise LongmixError(str(exc)) from None
    report["tokenizer"] = tokenizer.identity()
    packs = pack_specs(config, tokenizer)
    return SequencePlan(
        sources=config.source_specs(),
        max_document_bytes=config.concat.max_document_bytes,
        tokenizer=spec,
        packs=packs,
        lengths={domain: config.packing.lengths(domain) for domain, _ in packs},
        seed=config.run.seed,
        thresholds=config.stats.all_thresholds(),
    )


def packed_sequences(
    spark, config: Config, tasks: list[ReadTask], report: RunReport
) -> dict[str, str]:
    """The packed sequences in scratch, reused when an earlier run with the same packing
    settings finished them (the report's sections saved beside them)."""
    storage = storage_options(config)
    marker = join(config.scratch, PACKED_MARKER)
    if exists(marker, storage):
        saved = json.loads(read_text(marker, storage))
        if saved["digest"] == config.packing_digest():
            report.data.update(saved["report"])
            return {"sequences": saved["sequences"]}
    outputs, _ = write_sequences(spark, config, read(spark, config, tasks), report)
    sections = ("input", "tokenizer", "sources", "documents", "packing", "stats")
    saved = {
        "digest": config.packing_digest(),
        "sequences": outputs["sequences"],
        "report": {name: report[name] for name in sections},
    }
    write_text(marker, json.dumps(saved, indent=2), storage)
    return outputs


def write_sequences(
    spark, config: Config, records, report: RunReport, units: MdsSpec | None = None
) -> tuple[dict[str, str], dict[tuple[str, int], dict[str, Any]]]:
    """Records to packed sequences in one pass, then the partial sequences packed together.

    Everything the pass emits is written once, split by `row_type`: sequences (or, with
    `units`, the MDS units the tasks wrote them to: `commit` rows), the buckets' partial
    sequences, and one tally per task (the report's numbers), so no second pass or persisted
    copy of the corpus is needed to count it. Returns the packed sequences' location and
    the units' commit records."""
    from pyspark.sql import functions as F

    from stages.leftovers import pack_leftovers
    from stages.sequences import build_sequences

    plan = sequence_plan(spark, config, report)
    buckets = config.packing.buckets
    uri = join(config.scratch, PACKED_DIR)
    sink = None if units is None else (units, directories(config))
    rows = build_sequences(
        records,
        plan,
        buckets,
        config.packing.partitions or spark.sparkContext.defaultParallelism * 2,
        sink,
    )
    with report.stage("read_concatenate_tokenize_pack"):
        rows.write.mode("overwrite").partitionBy("row_type").parquet(uri)
    with report.stage("pack_leftovers"):
        packed = spark.read.parquet(uri)
        leftovers = pack_leftovers(packed, plan.packs, buckets, plan.thresholds, sink)
        leftovers.write.mode("append").partitionBy("row_type").parquet(uri)
    handed_on = (
        spark.read.parquet(uri)
        .where(F.col("row_type").isin("tally", "commit"))
        .select("row_type", "tally", "record")
        .collect()
    )
    tally = Tally.merged([row.tally for row in handed_on if row.row_type == "tally"])
    commits = [json.loads(row.record) for row in handed_on if row.row_type == "commit"]
    report["sources"] = sources_section(tally)
    report["documents"] = documents_section(tally)
    report["packing"] = packing_section(tally)
    report["stats"] = stats_section(
        tally, config.stats.all_thresholds(), config.stats.long_document_tokens
    )
    units_written = {(r["directory"], r["bucket"]): r for r in commits}
    return {"sequences": join(uri, "row_type=sequence")}, units_written


def mix_targets(config: Config, report: RunReport) -> dict[SpecKey, MixTarget]:
    available = {
        (domain, int(length)): numbers["sequences"]
        for domain, lengths in report["packing"].items()
        for length, numbers in lengths.items()
    }
    keys = set(available)
    for domain, length in config.mix.fractions():
        keys |= {(domain, n) for n in ([length] if length else config.packing.lengths(domain))}
    directories = {key: directory_for(config, *key) for key in keys}
    try:
        return plan_mix(
            available,
            directories,
            config.mix.fractions(),
            config.mix.tokens,
            config.mix.shortfall,
        )
    except MixError as exc:
        raise LongmixError(str(exc)) from None


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
        if config.packing.for_domain(domain).mode == "sft"
        or config.packing.for_domain(domain).method == "bfd"
    }
    return MdsSpec(
        root=root,
        storage=storage_options(config),
        indices_dtype=config.mds.indices_dtype,
        compression=config.mds.compression,
        shard_size=config.mds.shard_size,
        masked=frozenset(masked),
        digest=digest,
    )


def write_output(spark, config: Config, tasks: list[ReadTask], report: RunReport) -> dict:
    """Every packed sequence written once as MDS shards by the task that packs it, exactly
    once (units an interrupted run committed are not written again), and the mix as
    mix.yaml's proportions; or, with `mix.materialize`, the sampled mix written out from
    those shards."""
    storage = storage_options(config)
    for name in (SMOKE_FILE, VALIDATION_FILE):  # results about the output as it was
        delete_file(join(config.output, name), storage)
    materialize = config.mix.materialize
    root = join(config.scratch, SHARDS_DIR) if materialize else config.output
    shards = mds_spec(config, root, config.shards_digest())
    if clear_stale(shards):
        report["replaced_stale_output"] = True
    records = one_pass(spark, config, tasks, report, shards)
    targets = mix_targets(config, report)
    if materialize:
        mixed = mds_spec(config, config.output, config.digest(leave_out=("spark",)))
        if clear_stale(mixed):
            report["replaced_stale_output"] = True
        records = materialize_mix(spark, config, report, targets, records, shards, mixed)
        shards = mixed
    with report.stage("publish"):
        publish(shards, records)
    report["mix"] = mix_section(targets, records, materialize)
    write_mix_file(config.output, report["mix"], config.mix.tolerance, materialize, storage)
    return {"mds": config.output, "mix": join(config.output, MIX_FILE)}


def one_pass(
    spark, config: Config, tasks: list[ReadTask], report: RunReport, spec: MdsSpec
) -> dict[tuple[str, int], dict[str, Any]]:
    """Records to committed MDS units; skipped when a finished pass of the same shards is
    recorded beside them (a rerun with another mix only rewrites mix.yaml)."""
    storage = storage_options(config)
    marker = join(spec.root, PASS_MARKER)
    if exists(marker, storage):
        saved = json.loads(read_text(marker, storage))
        if saved["digest"] == spec.digest:
            report.data.update(saved["report"], reused_stored_sequences=True)
            return committed(spec)
    _, records = write_sequences(spark, config, read(spark, config, tasks), report, spec)
    sections = ("input", "tokenizer", "sources", "documents", "packing", "stats")
    saved = {"digest": spec.digest, "report": {name: report[name] for name in sections}}
    write_text(marker, json.dumps(saved, indent=2), storage)
    return records


def materialize_mix(
    spark,
    config: Config,
    report: RunReport,
    targets: dict[SpecKey, MixTarget],
    records: dict[tuple[str, int], dict[str, Any]],
    shards: MdsSpec,
    mixed: MdsSpec,
) -> dict[tuple[str, int], dict[str, Any]]:
    """The sampled, repeated mix read from the pass's shards and written exactly once."""
    from pyspark.sql import functions as F

    from stages.mds import write_mds
    from stages.mix import read_units, select_sequences

    done = committed(mixed)
    units = read_units(spark, shards, records)
    selected = select_sequences(units, targets, config.run.seed)
    if done:
        unit = F.concat_ws("/", "directory", F.col("bucket").cast("string"))
        selected = selected.where(~unit.isin([f"{d}/{b}" for d, b in done]))
    partitions = config.mds.partitions or spark.sparkContext.defaultParallelism * 2
    with report.stage("mix_and_write_mds"):
        written = write_mds(selected, mixed, partitions).collect()
    out = committed(mixed)
    lost = {(row.directory, row.bucket) for row in written} - set(out)
    if lost:
        raise LongmixError(f"units written but not committed: {sorted(lost)[:5]}")
    return out


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main(["prepare", *sys.argv[1:]]))

"""The job driver behind `longmix prepare` (and `spark-submit pipeline/main.py`).

It lists the inputs, builds the Spark plan from the stages, runs it, and writes the run
report and the resolved config beside the output. It never touches document text itself.
Each step hands back the report sections it owns (`Outcome`); the driver merges them.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from longmix.pipeline.card import VALIDATION_FILE, write_card
from longmix.pipeline.config import Config
from longmix.pipeline.input_versions import (
    InputVersion,
    current_versions,
    first_change,
    read_tasks_checked,
    recorded_versions,
    versions_digest,
    with_inputs,
    write_versions,
)
from longmix.pipeline.inputs import check_first_files, discover, evaluation_index
from longmix.pipeline.lock import run_lock
from longmix.pipeline.mixfile import MIX_FILE, mix_section, write_mix_file
from longmix.pipeline.ownership import (
    claim_folder,
    inside,
    normalized,
    refuse_foreign_card,
    refuse_foreign_folder,
    refuse_overlap,
)
from longmix.pipeline.plots import load_in_background
from longmix.pipeline.progress import shown
from longmix.pipeline.report import REPORT_FILE, RunReport
from longmix.pipeline.spark import (
    SessionStarting,
    caller_session_settings,
    refuse_workers_without_longmix,
    task_failures_as_errors,
)
from longmix.pipeline.specs import (
    direct_bins,
    direct_pass,
    directories,
    directory_for,
    faults,
    mds_spec,
    pass_buckets,
    pass_tasks,
    produced_domains,
    sequence_plan,
    source_specs,
    storage_options,
    tokenizer_spec,
)
from longmix.pipeline.stats import STATS_FILE, stats_section
from longmix.pipeline.summary import (
    contamination_section,
    documents_section,
    duplicates_section,
    packing_section,
    sources_section,
)
from longmix.pipeline.trainer.report import SMOKE_FILE
from longmix.stages.logic import duplicates as duplicates_in_memory
from longmix.stages.logic.chats import chat_problem
from longmix.stages.logic.counts import (
    DOCUMENT_TALLY_COLUMNS,
    READ_TALLY_COLUMNS,
    count_document,
    count_record,
)
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.fingerprints import Fingerprints
from longmix.stages.logic.mds import PASS_MARKER, MdsSpec, clear_stale, committed, publish
from longmix.stages.logic.mix import MixTarget, plan_mix
from longmix.stages.logic.read import ReadTask
from longmix.stages.logic.schemas import SEQUENCE_SCHEMA, SpecKey
from longmix.stages.logic.storage import (
    StorageOptions,
    delete_file,
    exists,
    is_s3,
    join,
    read_text,
    write_text,
)
from longmix.stages.logic.tally import Tally
from longmix.stages.logic.tokenizers import load_tokenizer
from longmix.stages.progress import Progress

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
# Hash rows counted on the driver up to this many (about 100 MB of Arrow), past it by Spark.
LOCAL_DEDUP_RECORDS = 1_000_000
PACKED_DIR = "packed"
PACKED_MARKER = "_packed.json"
SHARDS_DIR = "shards"  # under scratch: every packed sequence once, when the mix is materialized
Units = dict[tuple[str, int], dict[str, Any]]  # (directory, bucket) -> commit record
# What Spark's UI and event log call the pass's jobs (benchmarks/bench_cluster.py reads them).
PASS_JOB = "longmix: read, concatenate, tokenize, pack (the pass)"
LEFTOVERS_JOB = "longmix: pack the buckets' partial sequences"
COUNTS_JOB = "longmix: read the pass's counts back"
log = logging.getLogger("longmix")


@dataclass(frozen=True)
class Inputs:
    """What the run reads: the source files, how their documents are fingerprinted, and the
    digest of every input's version (`pipeline.input_versions`), which joins the config
    digest in every check of what an earlier run left."""

    tasks: list[ReadTask]
    fingerprints: Fingerprints
    digest: str
    buckets: int  # the pass's packing buckets (`specs.pass_buckets`)


@dataclass
class Outcome:
    """What a step hands back: where its outputs are, the report sections it owns, the
    length statistics (`_stats.json`) and the MDS units it committed."""

    outputs: dict[str, str] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    units: Units = field(default_factory=dict)


def prepare(config: Config, master: str | None = None, session=None) -> RunReport:
    """Run the pipeline up to `run.until` (documents, packed sequences, or the MDS mix);
    write the report and the resolved config beside the output. A run that finished with the
    same config and inputs is not run again; one that was killed resumes from what it
    committed. Everything the config and a first look at the inputs reveal is checked before
    anything is written (a refused run leaves no output folder), and the output is held by
    one run at a time. With `session`, the caller's SparkSession runs the stages (its
    workers must import longmix) and is left running; else one is built from `spark`."""
    storage = storage_options(config)
    refuse_before_work(config)
    if session is not None:
        refuse_workers_without_longmix(session)
    report = RunReport(config.run.name, config.digest())
    with report.stage("discover"):
        tasks = discover(config)
        versions = current_versions(config, tasks)
    digest = versions_digest(versions)
    saved = saved_report(config, storage)
    if finished(saved, config, digest):
        return RunReport.restored(saved)
    input_bytes = sum(t.size for t in tasks)
    starting = (
        nullcontext() if session is not None else SessionStarting(config.spark, master, input_bytes)
    )
    with starting:  # the JVM starts while the inputs are checked
        if config.run.until != "documents":
            preflight_tokenizer(config)
        check_first_files(config, tasks)
        checked = read_tasks_checked(tasks, config)
        inputs = Inputs(checked, fingerprints(config), digest, pass_buckets(config, checked))
        claim_outputs(config, storage)
        with run_lock(config.output, storage):
            say_what_changed(config, saved, versions, storage)
            write_versions(config.output, versions, storage)
            report.add(
                input={"files": len(tasks), "bytes": input_bytes},
                inputs_sha256=digest,
            )
            spark = session or starting.get()
            warm_workers_meanwhile(spark, config)
            with task_failures_as_errors(), caller_session_settings(session):
                outcome = run_stages(spark, config, inputs, report)
            report.add(**outcome.sections, outputs=outcome.outputs)
            write_results(config, report, outcome.stats, storage)
    return report


def warm_workers_meanwhile(spark, config: Config) -> None:
    """The executors' Python workers started, with the stages' modules and the tokenizer
    loaded, on a thread while the driver plans the first job (`stages.warmup`). Only an
    optimization: a failure here is left to the stages, which say what is wrong."""
    from longmix.stages.warmup import warm_workers

    tokenizer = None
    if config.run.until != "documents":
        tokenizer = tokenizer_spec(config.tokenizer, int(spark.conf.get("spark.task.cpus", "1")))

    def warm() -> None:
        try:
            warm_workers(spark, tokenizer)
        except Exception as exc:  # the stages meet the same cause and say it
            log.debug("warming the Python workers failed: %s", exc)

    threading.Thread(target=warm, name="longmix-warm-workers", daemon=True).start()


def say_what_changed(
    config: Config,
    saved: dict[str, Any] | None,
    versions: list[InputVersion],
    storage: StorageOptions,
) -> None:
    """One line each when the output was written with another config, or from other versions
    of its inputs (what the earlier run committed is then cleared)."""
    if saved is not None and saved.get("config_sha256") != config.digest():
        log.warning("config changed since this output was written: writing it again")
    recorded = recorded_versions(config.output, storage)
    change = None if recorded is None else first_change(recorded, versions)
    if change:
        log.warning("inputs changed since the output was written (%s); writing it again", change)


def say_what_came_out(config: Config, sections: dict[str, Any]) -> None:
    """One line for each (domain, length) that got no sequence, with its largest drop, and
    one for exact copies a run kept (with the setting that removes them)."""
    for domain, lengths in sorted(sections.get("packing", {}).items()):
        for length, numbers in sorted(lengths.items(), key=lambda kv: int(kv[0])):
            if numbers["sequences"]:
                continue
            drops = sorted(numbers["dropped"].items(), key=lambda kv: -kv[1]["tokens"])
            cause = (
                f"{drops[0][1]['tokens']:,} tokens dropped as {drops[0][0]}"
                if drops
                else "no document reached it"
            )
            log.warning("%s at length %s: no sequence (%s)", domain, length, cause)
    found = sections.get("duplicates", {})
    copies = sum(n.get("documents", 0) for n in found.get("sources", {}).values())
    if copies and not found.get("removed"):
        log.warning(
            "%s documents are exact copies of others (kept; `dedup: exact` removes them, and "
            "`validate` warns of the repeated samples they make)",
            f"{copies:,}",
        )


REMOVED_ON_PURPOSE = {"duplicate", "contaminated"}


def refuse_lost_sources(config: Config, sources: dict[str, Any]) -> None:
    """A source that yielded no document at all ends the run with one line naming it and
    the first reason its records were skipped; not one whose documents were all removed on
    purpose (`dedup: exact`, `decontaminate.remove`)."""
    for name in config.sources:
        found = sources.get(name, {})
        if sum(n["documents"] for n in found.get("domains", {}).values()):
            continue
        if set(found.get("skipped", {})) & REMOVED_ON_PURPOSE:
            continue
        reasons = sorted(found.get("skipped", {}).items(), key=lambda kv: -kv[1]["count"])
        if not reasons:
            raise LongmixError(f"source {name!r} yielded no document")
        reason, numbers = reasons[0]
        file, first = next(iter(sorted(numbers["files"].items())))
        example = f": {first['example']}" if first.get("example") else ""
        raise LongmixError(
            f"source {name!r} yielded no document: {numbers['count']:,} records skipped as "
            f"{reason}, the first in {file}{example}"
        )


def refuse_before_work(config: Config) -> None:
    """What the config alone shows to be wrong, and folders longmix does not own, refused
    before anything is written."""
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
    storage = storage_options(config)
    refuse_foreign_folder(output, storage, "output")
    if separate_local_scratch(config):
        refuse_foreign_folder(config.scratch, StorageOptions(), "run.scratch")


def claim_outputs(config: Config, storage: StorageOptions) -> None:
    """The output (and a separate scratch) marked as longmix's."""
    claim_folder(config.output, storage, "output")
    if separate_local_scratch(config):
        claim_folder(config.scratch, StorageOptions(), "run.scratch")


def separate_local_scratch(config: Config) -> bool:
    local = "://" not in config.scratch  # hdfs:// and the like: Spark's to check
    return local and not inside(normalized(config.scratch), normalized(config.output))


def refuse_unmixable(config: Config) -> None:
    """Mix domains that no source produces would fail only after packing."""
    produced = produced_domains(config)
    missing = sorted({domain for domain, _ in config.mix.fractions()} - set(produced))
    if missing:
        raise LongmixError(
            f"mix.domains names {', '.join(missing)}, which no source produces "
            f"(the sources produce {', '.join(produced)})"
        )


def preflight_tokenizer(config: Config) -> None:
    """The tokenizer loads here, and renders chats if a source has them, before any data."""
    task_cpus = int(config.spark.conf.get("spark.task.cpus", 1))
    tokenizer = load_tokenizer(tokenizer_spec(config.tokenizer, task_cpus))
    chats = sorted(n for n, s in source_specs(config).items() if s.kind == "chat")
    problem = chat_problem(tokenizer) if chats else None
    if problem:
        raise LongmixError(f"{problem} (chat sources: {', '.join(chats)})")
    if tokenizer.bos_id is None and tokenizer.eos_id is None:
        log.warning(NO_SEPARATOR, tokenizer.name)


NO_SEPARATOR = (
    "tokenizer %r declares no BOS or EOS, so packed documents get no separator token "
    "(only `indices` mark their boundaries); set tokenizer.eos (or tokenizer.bos) to one of "
    "its special tokens to separate them"
)


def fingerprints(config: Config) -> Fingerprints:
    """How the read tasks mark documents; the evaluation n-grams are read here, once."""
    return Fingerprints(
        config.dedup.normalize, evaluation_index(config), config.decontaminate.remove
    )


def run_stages(spark, config: Config, inputs: Inputs, report: RunReport) -> Outcome:
    if config.run.until == "documents":
        return write_documents(spark, config, inputs, report)
    if config.run.until == "mds":
        return write_output(spark, config, inputs, report)
    return packed_sequences(spark, config, inputs, report)


def write_results(
    config: Config,
    report: RunReport,
    stats: dict[str, Any] | None,
    storage: StorageOptions,
) -> None:
    output = config.output
    write_text(
        join(output, "config.resolved.yaml"),
        yaml.safe_dump(config.redacted(), sort_keys=False),
        storage,
    )
    if stats is not None:
        text = json.dumps(stats, indent=1, sort_keys=True)
        write_text(join(output, STATS_FILE), text + "\n", storage)
    write_text(join(output, REPORT_FILE), report.to_json() + "\n", storage)
    if config.run.until == "mds" and not is_s3(output):
        report.add(card=str(write_card(Path(output), Path(config.resolve(config.run.cards)))))


def card_paths(config: Config) -> list[Path]:
    """Where a run's data card goes: its cards folder and beside the output."""
    return [
        Path(config.resolve(config.run.cards)) / config.run.name / "README.md",
        Path(config.output) / "README.md",
    ]


def saved_report(config: Config, storage: StorageOptions) -> dict[str, Any] | None:
    """The report an earlier run left beside the output, if any."""
    uri = join(config.output, REPORT_FILE)
    return json.loads(read_text(uri, storage)) if exists(uri, storage) else None


def finished(saved: dict[str, Any] | None, config: Config, inputs_digest: str) -> bool:
    """Whether `saved` is the report of a finished run with this very config and these very
    inputs."""
    return (
        saved is not None
        and "outputs" in saved
        and saved.get("config_sha256") == config.digest()
        and saved.get("inputs_sha256") == inputs_digest
    )


def read(spark, config: Config, inputs: Inputs, progress: Progress | None = None):
    from longmix.stages.read import read_sources

    return read_sources(
        spark,
        inputs.tasks,
        source_specs(config),
        storage_options(config),
        config.run.strict,
        config.read_target_bytes,
        inputs.fingerprints,
        faults(config),
        progress,
    )


def dedup_partitions(spark) -> int:
    return spark.sparkContext.defaultParallelism * 2


def duplicates(spark, hashes, config: Config, removed: bool, records: int) -> dict[str, Any]:
    """The report's `duplicates` section from the `records` HASH_COLUMNS rows (a DataFrame,
    or an Arrow table already on the driver): counted on the driver when they are few
    (`LOCAL_DEDUP_RECORDS`), else by Spark (only hashes shuffled)."""
    import pyarrow as pa

    from longmix.stages import dedup

    def rows(found) -> list[dict[str, Any]]:
        found = [row if isinstance(row, dict) else row.asDict() for row in found]
        return sorted(found, key=lambda r: sorted(r.items(), key=str))

    priority, partitions = config.dedup.priority, dedup_partitions(spark)
    if isinstance(hashes, pa.Table) or records <= LOCAL_DEDUP_RECORDS:
        table = hashes if isinstance(hashes, pa.Table) else hashes.toArrow()
        copies = rows(duplicates_in_memory.copy_counts(table, priority))
        groups = rows(duplicates_in_memory.group_copy_counts(table, priority))
    else:
        copies = rows(dedup.copy_counts(hashes, priority, partitions))
        groups = rows(dedup.group_copy_counts(hashes, priority, partitions))
    return {"normalize": config.dedup.normalize, **duplicates_section(copies, groups, removed)}


def deduplicated(
    spark, config: Config, inputs: Inputs, report: RunReport, progress: Progress | None = None
):
    """The read records, and with `dedup.mode: exact` the `duplicates` section found first:
    the sources are read once for their hashes alone, then again with every copy turned into
    a skipped record (`duplicate`), so no copy reaches packing."""
    from pyspark import StorageLevel

    from longmix.stages.dedup import copies, record_hashes, without_copies

    records = read(spark, config, inputs, progress)
    if config.dedup.mode != "exact":
        return records, None
    hashes = record_hashes(read(spark, config, inputs)).persist(StorageLevel.MEMORY_AND_DISK)
    with report.stage("find_duplicates"):
        section = duplicates(spark, hashes, config, True, hashes.count())
    copied = copies(hashes, config.dedup.priority, dedup_partitions(spark))
    return without_copies(records, copied), section


def contamination(tally: Tally, config: Config, inputs: Inputs) -> dict[str, Any]:
    """The `contamination` section, when evaluation texts were given."""
    index = inputs.fingerprints.index
    if index is None:
        return {}
    removed = config.decontaminate.remove
    return {"contamination": contamination_section(tally, index.summary(), removed)}


def write_documents(spark, config: Config, inputs: Inputs, report: RunReport) -> Outcome:
    """The concatenated documents as parquet: a checkpoint to inspect, not the fast path."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from longmix.stages.concat import concatenate
    from longmix.stages.dedup import copies, record_hashes, without_copies
    from longmix.stages.tally import collect_tally

    records = read(spark, config, inputs).persist(StorageLevel.DISK_ONLY)
    with report.stage("read"):
        read_tally = collect_tally(records, READ_TALLY_COLUMNS, count_record)
        refuse_lost_sources(config, sources_section(read_tally))
        hashes = record_hashes(records)
        removed = config.dedup.mode == "exact"
        kept = sum(n["documents"] for n in read_tally.where("read").values())
        found = duplicates(spark, hashes, config, removed, kept)
    if removed:
        copied = copies(hashes, config.dedup.priority, dedup_partitions(spark))
        records = without_copies(records, copied)
    documents = concatenate(
        records.where(F.col("skip_reason").isNull()),
        source_specs(config),
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
    sections = {
        "sources": sources_section(read_tally),
        "documents": documents_section(written),
        "duplicates": found,
        **contamination(read_tally, config, inputs),
    }
    say_what_came_out(config, sections)
    return Outcome({"documents": uri}, sections)


def packed_sequences(spark, config: Config, inputs: Inputs, report: RunReport) -> Outcome:
    """The packed sequences in scratch, reused when an earlier run with the same packing
    settings finished them."""
    storage = storage_options(config)
    marker = join(config.scratch, PACKED_MARKER)
    digest = with_inputs(config.packing_digest(), inputs.digest)
    outcome = saved_pass(marker, digest, storage)
    if outcome is None:
        outcome = write_sequences(spark, config, inputs, report)
        save_pass(marker, digest, outcome, report, storage)
    outcome.outputs = {"sequences": join(config.scratch, PACKED_DIR, "row_type=sequence")}
    return outcome


def saved_pass(marker: str, digest: str, storage: StorageOptions) -> Outcome | None:
    """The sections and statistics of a finished packing pass recorded beside its output."""
    if not exists(marker, storage):
        return None
    saved = json.loads(read_text(marker, storage))
    if saved.get("digest") != digest:
        return None
    sections = dict(saved["report"])
    sections.pop("input", None)  # the inputs are listed again by this run
    stats = sections.pop("stats")
    return Outcome(sections=sections, stats=stats)


def save_pass(
    marker: str, digest: str, outcome: Outcome, report: RunReport, storage: StorageOptions
) -> None:
    sections = {"input": report["input"], **outcome.sections, "stats": outcome.stats}
    write_text(marker, json.dumps({"digest": digest, "report": sections}, indent=2), storage)


def write_sequences(
    spark, config: Config, inputs: Inputs, report: RunReport, units: MdsSpec | None = None
) -> Outcome:
    """Records to packed sequences in one pass, then the partial sequences packed together.

    Everything the pass emits is written once, split by `row_type`: sequences (or, with
    `units`, the MDS units the tasks wrote them to: `commit` rows), the buckets' partial
    sequences, one tally per task (the report's numbers) and each packed record's hash (`hash`
    rows, from which duplicates are counted), so no second pass or persisted
    copy of the corpus is needed to count it."""
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from longmix.stages.dedup import HASH_COLUMNS
    from longmix.stages.direct import direct_sequences
    from longmix.stages.read import read_arguments
    from longmix.stages.sequences import build_sequences

    spec = tokenizer_spec(config.tokenizer, int(spark.conf.get("spark.task.cpus", "1")))
    tokenizer = load_tokenizer(spec)
    plan = sequence_plan(config, spec, tokenizer)
    buckets = inputs.buckets
    uri = join(config.scratch, PACKED_DIR)
    sink = None if units is None else (units, directories(config))
    progress = Progress.started(spark)
    shuffled = not direct_pass(config)
    if not shuffled:
        found, partitions = None, buckets
        arguments = read_arguments(
            spark,
            inputs.fingerprints,
            source_specs(config),
            storage_options(config),
            config.run.strict,
            faults(config),
            progress,
        )
        bins = direct_bins(config, inputs.tasks)
        rows = direct_sequences(spark, bins, plan, arguments, sink, progress)
    else:
        input_bytes = sum(t.size for t in inputs.tasks)
        cores = spark.sparkContext.defaultParallelism
        partitions = pass_tasks(config, input_bytes, buckets, cores)
        records, found = deduplicated(spark, config, inputs, report, progress)
        rows = build_sequences(records, plan, buckets, partitions, sink, progress)
    context = spark.sparkContext
    with shown(progress):
        with report.stage("read_concatenate_tokenize_pack"):
            context.setJobDescription(PASS_JOB)
            rows.write.mode("overwrite").partitionBy("row_type").parquet(uri)
        # Hash rows come along when the read tasks counted few documents (a hint only: the
        # duplicates counted are the same either way).
        few = found is None and progress.counts().get("documents", 0) <= LOCAL_DEDUP_RECORDS
        with report.stage("pack_leftovers"):
            handed_on = pass_results(spark, uri, plan, buckets, sink, progress, few)
    context.setJobDescription(None)
    kinds = handed_on.column("row_type").to_pylist()
    tallies, records = handed_on.column("tally").to_pylist(), handed_on.column("record").to_pylist()
    tally = Tally.merged([t for kind, t in zip(kinds, tallies, strict=True) if kind == "tally"])
    commits = [json.loads(r) for kind, r in zip(kinds, records, strict=True) if kind == "commit"]
    if found is None:
        with report.stage("count_duplicates"):
            kept = sum(n["documents"] for n in tally.where("read").values())
            if few:
                hashes = handed_on.filter(pc.equal(handed_on["row_type"], "hash"))
            else:
                hashes = pass_rows(spark, uri).where(F.col("row_type") == "hash")
            found = duplicates(spark, hashes.select(HASH_COLUMNS), config, False, kept)
    sources = sources_section(tally)
    refuse_lost_sources(config, sources)
    sections = {
        "tokenizer": tokenizer.identity(),
        "pass": {"buckets": buckets, "tasks": partitions, "shuffle": shuffled},
        "sources": sources,
        "documents": documents_section(tally),
        "packing": packing_section(tally),
        "duplicates": found,
        **contamination(tally, config, inputs),
    }
    say_what_came_out(config, sections)
    if not any(
        n["sequences"] for lengths in sections["packing"].values() for n in lengths.values()
    ):
        raise LongmixError(
            "the run produced no sequence at all: no (domain, length) got one (see the lines "
            "above; `packing.domains.<domain>.mode`, `min_length` and `sequence_length` decide)"
        )
    stats = stats_section(tally, config.stats.all_thresholds(), config.stats.long_document_tokens)
    units_written = {(r["directory"], r["bucket"]): r for r in commits}
    return Outcome(sections=sections, stats=stats, units=units_written)


def pass_rows(spark, uri: str):
    """The pass's rows as written (SEQUENCE_SCHEMA, split by `row_type`); the schema is
    given, so reading them starts no job of its own."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.read.schema(from_arrow_schema(SEQUENCE_SCHEMA)).parquet(uri)


def pass_rows_table(spark, uri: str, kinds: list[str]):
    """The pass's rows of these `row_type`s as one Arrow table (SEQUENCE_SCHEMA): read here
    by pyarrow when the scratch is a plain local folder (no job to start), else by Spark."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    if "://" in uri:
        table = pass_rows(spark, uri).where(F.col("row_type").isin(*kinds)).toArrow()
    else:  # Spark's committed files only: `_temporary` and `_SUCCESS` are skipped by name
        rows = ds.dataset(uri, format="parquet", partitioning="hive")
        table = rows.to_table(filter=pc.field("row_type").isin(kinds))
    return table.select(SEQUENCE_SCHEMA.names).cast(SEQUENCE_SCHEMA)


def pass_results(spark, uri: str, plan, buckets: int, sink, progress: Progress, hashes: bool):
    """The pass's tally and commit rows (and `hash` rows with `hashes`) as one Arrow table,
    after the buckets' partial sequences are packed: on the driver when they surely fit
    (`leftovers_fit_driver`) and go to MDS units, else by Spark tasks appending their rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from longmix.stages.leftovers import (
        leftovers_fit_driver,
        pack_leftovers,
        pack_leftovers_on_driver,
    )

    kinds = ["tally", "commit", *(["hash"] if hashes else [])]
    context = spark.sparkContext
    if sink is not None and leftovers_fit_driver(plan.packs, buckets):
        context.setJobDescription(COUNTS_JOB)
        table = pass_rows_table(spark, uri, [*kinds, "partial"])
        partials = table.filter(pc.equal(table["row_type"], "partial"))
        packed = pack_leftovers_on_driver(
            partials, plan.packs, buckets, plan.thresholds, sink, progress
        )
        return pa.concat_tables([table.filter(pc.not_equal(table["row_type"], "partial")), packed])
    leftovers = pack_leftovers(
        pass_rows(spark, uri), plan.packs, buckets, plan.thresholds, sink, progress
    )
    context.setJobDescription(LEFTOVERS_JOB)
    leftovers.write.mode("append").partitionBy("row_type").parquet(uri)
    context.setJobDescription(COUNTS_JOB)
    return pass_rows_table(spark, uri, kinds)


def mix_targets(config: Config, packing: dict[str, Any]) -> dict[SpecKey, MixTarget]:
    available = {
        (domain, int(length)): numbers["sequences"]
        for domain, lengths in packing.items()
        for length, numbers in lengths.items()
    }
    keys = set(available)
    for domain, length in config.mix.fractions():
        keys |= {(domain, n) for n in ([length] if length else config.packing.lengths(domain))}
    return plan_mix(
        available,
        {key: directory_for(config, *key) for key in keys},
        config.mix.fractions(),
        config.mix.tokens,
        config.mix.shortfall,
    )


def write_output(spark, config: Config, inputs: Inputs, report: RunReport) -> Outcome:
    """Every packed sequence written once as MDS shards by the task that packs it, exactly
    once (units an interrupted run committed are not written again), and the mix as
    mix.yaml's proportions; or, with `mix.materialize`, the sampled mix written out from
    those shards."""
    storage = storage_options(config)
    for name in (SMOKE_FILE, VALIDATION_FILE):  # results about the output as it was
        delete_file(join(config.output, name), storage)
    materialize = config.mix.materialize
    root = join(config.scratch, SHARDS_DIR) if materialize else config.output
    shards = mds_spec(config, root, with_inputs(config.shards_digest(), inputs.digest))
    replaced = clear_stale(shards)
    if replaced:
        log.warning("cleared the shards an earlier run wrote with another config or inputs")
    say_resumed(config, shards, inputs.buckets)
    if not is_s3(config.output):  # the card's plots follow the pass
        load_in_background()
    outcome = one_pass(spark, config, inputs, report, shards)
    targets = mix_targets(config, outcome.sections["packing"])
    units = outcome.units
    if materialize:
        digest = with_inputs(config.digest(leave_out=("spark",)), inputs.digest)
        mixed = mds_spec(config, config.output, digest)
        replaced = clear_stale(mixed) or replaced
        units = materialize_mix(spark, config, report, targets, units, shards, mixed)
        shards = mixed
    with report.stage("publish"):
        publish(shards, units)
    mix = mix_section(targets, units, materialize)
    write_mix_file(config.output, mix, config.mix.tolerance, materialize, storage)
    outcome.sections["mix"] = mix
    if replaced:
        outcome.sections["replaced_stale_output"] = True
    outcome.outputs = {"mds": config.output, "mix": join(config.output, MIX_FILE)}
    return outcome


def say_resumed(config: Config, shards: MdsSpec, buckets: int) -> None:
    """One line when a killed run's committed units are kept (not when a finished pass is
    reused)."""
    done = committed(shards)
    if done and not exists(join(shards.root, PASS_MARKER), shards.storage):
        most = len(set(directories(config).values())) * buckets
        log.warning("resuming: %d of at most %d units already committed", len(done), most)


def one_pass(spark, config: Config, inputs: Inputs, report: RunReport, spec: MdsSpec) -> Outcome:
    """Records to committed MDS units; skipped when a finished pass of the same shards is
    recorded beside them (a rerun with another mix only rewrites mix.yaml)."""
    storage = storage_options(config)
    marker = join(spec.root, PASS_MARKER)
    outcome = saved_pass(marker, spec.digest, storage)
    if outcome is not None:
        outcome.sections["reused_stored_sequences"] = True
        outcome.units = committed(spec)
        return outcome
    outcome = write_sequences(spark, config, inputs, report, spec)
    save_pass(marker, spec.digest, outcome, report, storage)
    return outcome


def materialize_mix(
    spark,
    config: Config,
    report: RunReport,
    targets: dict[SpecKey, MixTarget],
    units: Units,
    shards: MdsSpec,
    mixed: MdsSpec,
) -> Units:
    """The sampled, repeated mix read from the pass's shards and written exactly once."""
    from pyspark.sql import functions as F

    from longmix.stages.mds import write_mds
    from longmix.stages.mix import read_units, select_sequences

    done = committed(mixed)
    selected = select_sequences(read_units(spark, shards, units), targets, config.run.seed)
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

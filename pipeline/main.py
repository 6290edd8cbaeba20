"""The job driver: `longmix prepare CONFIG` or `spark-submit pipeline/main.py CONFIG`.

It lists the inputs, builds the Spark plan from the stages, runs it, and writes the run
report and the resolved config beside the output. It never touches document text itself.
"""

from __future__ import annotations

import sys

import yaml

from pipeline.config import Config
from pipeline.errors import LongmixError
from pipeline.report import RunReport
from pipeline.spark import build_session
from stages.logic.pack import PackSpec
from stages.logic.read import ReadTask
from stages.logic.readers import BadRecordError
from stages.logic.storage import StorageOptions, expand, is_s3, join, write_text
from stages.logic.tokenizers import Tokenizer, TokenizerError, load_tokenizer

DOCUMENTS_DIR = "documents"
# A document can be tens of MB: parquet's min/max statistics and dictionary attempt would
# each copy such a value on the JVM heap, so both are off for the text column; small row
# groups let the tokenize stage split the documents by bytes.
TEXT_PARQUET_OPTIONS = {
    "parquet.column.statistics.enabled#text": "false",
    "parquet.enable.dictionary#text": "false",
    "parquet.block.size": str(16 * 1024 * 1024),
    "compression": "zstd",
}
SEQUENCES_DIR = "sequences"


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
            ReadTask(name, uri, uri[len(common) :].lstrip("/"), entry.size)
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


def bad_record_message(exc: BaseException) -> str | None:
    text = str(exc)
    at = text.find(BadRecordError.MARKER)
    if at < 0:
        return None
    return text[at + len(BadRecordError.MARKER) :].splitlines()[0].strip()


def prepare(config: Config, master: str | None = None) -> RunReport:
    """Run the pipeline up to `run.until`: read, concatenate and write documents, then
    tokenize and pack them into sequences; write the report and the resolved config."""
    from pyspark import StorageLevel

    from stages.concat import concatenate, summarize_documents
    from stages.read import read_sources, summarize_read

    storage = storage_options(config)
    output = config.output
    if is_s3(output):
        raise LongmixError(
            "run.output on S3 needs the MDS writer stage; give a local or cluster path for now"
        )
    report = RunReport(config.run.name, config.digest())
    with report.stage("discover"):
        tasks = discover(config, storage)
    report["input"] = {"files": len(tasks), "bytes": sum(t.size for t in tasks)}
    spark = build_session(config.spark, master)
    specs = config.source_specs()
    try:
        records = read_sources(
            spark, tasks, specs, storage, config.run.strict, config.read_target_bytes
        ).persist(StorageLevel.DISK_ONLY)
        with report.stage("read"):
            report["sources"] = summarize_read(records)
        kept = records.where(records.skip_reason.isNull())
        documents = concatenate(
            kept,
            specs,
            config.run.seed,
            config.concat.max_document_bytes,
            config.concat.partitions or spark.sparkContext.defaultParallelism * 2,
        )
        documents_uri = join(output, DOCUMENTS_DIR)
        with report.stage("concatenate_and_write"):
            documents.write.options(**TEXT_PARQUET_OPTIONS).mode("overwrite").parquet(documents_uri)
        records.unpersist()
        with report.stage("summarize"):
            report["documents"] = summarize_documents(spark.read.parquet(documents_uri))
        outputs = {"documents": documents_uri}
        if config.run.until == "sequences":
            outputs["sequences"] = join(output, SEQUENCES_DIR)
            with report.stage("tokenize_and_pack"):
                tokenize_and_pack(spark, config, documents_uri, outputs["sequences"], report)
    except Exception as exc:
        message = bad_record_message(exc)
        if message:
            raise LongmixError(message) from None
        raise
    report["outputs"] = outputs
    write_text(join(output, "_report.json"), report.to_json() + "\n", storage)
    write_text(
        join(output, "config.resolved.yaml"),
        yaml.safe_dump(config.redacted(), sort_keys=False),
        storage,
    )
    return report


def pack_specs(
    config: Config, domains: list[str], tokenizer: Tokenizer
) -> dict[tuple[str, int], PackSpec]:
    specs = {}
    for domain in domains:
        packing = config.packing.for_domain(domain)
        for length in config.packing.lengths(domain):
            specs[(domain, length)] = PackSpec(
                mode=packing.mode,
                length=length,
                min_length=length if packing.min_length is None else packing.min_length,
                bos=tokenizer.bos_id,
                eos=tokenizer.eos_id,
            )
    return specs


def tokenize_and_pack(
    spark, config: Config, documents_uri: str, sequences_uri: str, report: RunReport
) -> None:
    """Documents (split by bytes) to tokens to exact-length sequences, with token accounts."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from stages.pack import assign, pack, pack_leftovers, summarize_packing
    from stages.tokenize import tokenize

    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    spec = config.tokenizer.spec(task_cpus)
    try:
        tokenizer = load_tokenizer(spec)
    except TokenizerError as exc:
        raise LongmixError(str(exc)) from None
    report["tokenizer"] = tokenizer.identity()
    domains = sorted({d for per in report["documents"].values() for d in per})
    specs = pack_specs(config, domains, tokenizer)
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(config.packing.split_bytes))
    # A document can be tens of MB: the vectorized reader asks the JVM for one contiguous
    # buffer per column batch (hundreds of MB); the row reader holds one document at a time.
    spark.conf.set("spark.sql.parquet.enableVectorizedReader", "false")
    tokens = tokenize(spark.read.parquet(documents_uri), spec)
    lengths = {d: config.packing.lengths(d) for d in domains}
    assigned = assign(tokens, lengths, config.packing.buckets, config.run.seed).persist(
        StorageLevel.DISK_ONLY
    )
    partitions = config.packing.partitions or spark.sparkContext.defaultParallelism * 2
    packed = pack(assigned, specs, partitions).persist(StorageLevel.DISK_ONLY)
    leftovers = pack_leftovers(packed, specs, config.packing.buckets).persist(
        StorageLevel.DISK_ONLY
    )
    rows = packed.where(F.col("row_type") != "partial").unionByName(leftovers)
    (
        rows.where(F.col("row_type") == "sequence")
        .select("domain", "seq_len", "bucket", "seq_no", "input_ids", "indices", "mask")
        .write.mode("overwrite")
        .parquet(sequences_uri)
    )
    report["packing"] = summarize_packing(assigned, rows)
    for frame in (leftovers, packed, assigned):
        frame.unpersist()


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main(["prepare", *sys.argv[1:]]))

"""The `longmix` command line. User errors print one line and exit 2; no traceback."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console
from rich.table import Table

from pipeline.errors import LongmixError
from pipeline.spark import silence_spark, spark_started
from stages.logic.redaction import scrub
from stages.logic.storage import StorageOptions, write_text

if TYPE_CHECKING:
    from pipeline.config import SmokeConfig

console = Console(stderr=True)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="longmix", description=__doc__)
    root.add_argument(
        "--debug", action="store_true", help="print the full traceback of an unexpected error"
    )
    commands = root.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="run the pipeline on a config")
    prepare.add_argument("config", help="YAML config (see configs/)")
    add_common(prepare)

    validate = commands.add_parser("validate", help="check every sample of an output")
    validate.add_argument("path", help="the run's output folder (local or s3://)")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.add_argument("--s3-endpoint-url", help="an S3-compatible endpoint")

    stats = commands.add_parser("stats", help="length tables and histograms of an output")
    stats.add_argument("path", nargs="?", help="a longmix output folder, or an MDS dataset")
    stats.add_argument("--config", help="statistics of a config's raw sources (runs Spark)")
    stats.add_argument(
        "--from-shards", action="store_true", help="read the samples even beside _stats.json"
    )
    stats.add_argument("--compare", help="a second output or dataset, side by side")
    stats.add_argument("--plots", help="write PNG histograms into this folder")
    stats.add_argument("--json", action="store_true", help="print tables and statistics as JSON")
    add_common(stats)

    smoke = commands.add_parser(
        "smoke", help="a short document-masked training run over an output's mix"
    )
    smoke.add_argument("path", help="the run's output folder (local or s3://)")
    smoke.add_argument(
        "--config", help="take the smoke section from this config (default: the run's own)"
    )
    smoke.add_argument("--steps", type=int, help="optimizer steps (default: the config's)")
    smoke.add_argument("--json", action="store_true", help="print the report as JSON")
    smoke.add_argument("--s3-endpoint-url", help="an S3-compatible endpoint")
    smoke.add_argument(
        "--no-validate", action="store_true", help="train even on an output that fails validation"
    )
    smoke.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="smoke.KEY=VALUE",
        help="override a smoke setting, e.g. --set smoke.model.layers=4 (repeatable)",
    )

    card = commands.add_parser("card", help="validate an output and (re)write its data card")
    card.add_argument("path", help="the run's local output folder")
    card.add_argument("--cards", default="data_cards", help="cards folder (default data_cards)")
    card.add_argument("--no-validate", action="store_true", help="skip reading every sample")

    demo = commands.add_parser("demo", help="build a small real-schema corpus and run on it")
    demo.add_argument("--workdir", default="demo", help="where corpus/ and output/ go")
    add_common(demo)
    return root


def add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set run.seed=7 (repeatable)",
    )
    command.add_argument("--master", help="Spark master URL (default: the config's)")


def run_prepare(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.main import prepare

    config = load_config(args.config, args.overrides)
    report = prepare(config, args.master)
    if report.data.get("already_complete"):
        console.print(
            f"{config.output}: already complete with this config; nothing to do", soft_wrap=True
        )
        return 0
    print_summary(report.data)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.demo import build_corpus
    from pipeline.main import prepare
    from pipeline.presets import config_path

    workdir = Path(args.workdir).resolve()
    with console.status(f"building the demo corpus in {workdir / 'corpus'}"):
        build_corpus(workdir / "corpus")
    config = load_config(config_path("demo"), [f"run.workdir={workdir}", *args.overrides])
    report = prepare(config, args.master)
    print_summary(report.data)
    outputs = ", ".join(f"{name} in {uri}" for name, uri in report["outputs"].items())
    console.print(f"[bold green]demo done[/]: {outputs}; report in {config.output}/_report.json")
    return 0


def print_summary(report: dict) -> None:
    documents = Table(title=f"longmix run {report['run']!r}: documents")
    for column in ("source", "domain", "documents", "MB", "split groups"):
        documents.add_column(column, justify="left" if column in ("source", "domain") else "right")
    for source, domains in report["documents"].items():
        for domain, numbers in domains.items():
            documents.add_row(
                source,
                domain,
                f"{numbers['documents']:,}",
                f"{numbers['bytes'] / 1e6:,.1f}",
                f"{numbers['split_groups']:,}",
            )
    console.print(documents)
    skipped = Table(title="records left out (details in _report.json)")
    for column in ("source", "reason", "records", "files", "bad input"):
        skipped.add_column(column, justify="left" if column in ("source", "reason") else "right")
    for source, info in report["sources"].items():
        for reason, entry in info["skipped"].items():
            skipped.add_row(
                source,
                reason,
                f"{entry['count']:,}",
                str(len(entry["files"])),
                "yes" if entry["counts_as_bad"] else "no",
            )
    if skipped.row_count:
        console.print(skipped)
    if "packing" in report:
        console.print(packing_table(report))
    if "mix" in report:
        console.print(mix_table(report["mix"]))
    seconds = sum(report["stage_seconds"].values())
    console.print(f"{report['input']['files']} input files, stages took {seconds:.1f} s")


def packing_table(report: dict) -> Table:
    table = Table(title=f"packed sequences ({report['tokenizer']['name']} tokens)")
    columns = (
        "domain",
        "length",
        "docs",
        "tokens in",
        "sequences",
        "dropped",
        "padding",
        "split docs: concat / bfd",
        "accounted",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, lengths in sorted(report["packing"].items()):
        for length, n in sorted(lengths.items()):
            dropped = sum(d["tokens"] for d in n["dropped"].values())
            table.add_row(
                domain,
                length,
                f"{n['documents_in']:,}",
                f"{n['tokens_in']:,}",
                f"{n['sequences']:,}",
                f"{dropped:,}",
                f"{n['padding_tokens']:,}",
                truncation(n),
                "yes" if n["tokens_accounted"] else "NO",
            )
    return table


def mix_table(mix: dict) -> Table:
    table = Table(title="MDS output (mix.yaml)")
    columns = ("directory", "available", "written", "repeat", "tokens: target", "achieved")
    for column in columns:
        table.add_column(column, justify="left" if column == "directory" else "right")
    for directory, n in mix.items():
        table.add_row(
            directory,
            f"{n['available_sequences']:,}",
            f"{n['sequences']:,}",
            f"{n['repeat']:.2f}",
            f"{n['target_token_fraction']:.1%}",
            f"{n['token_fraction']:.1%}",
        )
    return table


def truncation(numbers: dict) -> str:
    rates = numbers.get("truncation_rate")
    return f"{rates['concat']:.1%} / {rates['bfd']:.1%}" if rates else "-"


def run_validate(args: argparse.Namespace) -> int:
    from pipeline.validate import validate

    require_train_extra("validate")
    with console.status(f"validating {args.path}"):
        result = validate(args.path, StorageOptions(args.s3_endpoint_url))
    if args.json:
        print(result.to_json())
        return 0 if result.ok else 1
    if result.ok:
        table = Table(title=f"{args.path}: every sample valid")
        for column in ("directory", "samples", "tokens"):
            table.add_column(column, justify="left" if column == "directory" else "right")
        for directory in sorted(result.samples):
            samples, tokens = result.samples[directory], result.tokens[directory]
            table.add_row(directory, f"{samples:,}", f"{tokens:,}")
        console.print(table)
        return 0
    console.print(f"[bold red]{len(result.failures)} problems[/] in {args.path}:")
    for f in result.failures:
        where = ", ".join(
            part
            for part in (f.directory, f.shard, None if f.sample is None else f"sample {f.sample}")
            if part
        )
        console.print(f"  {where}: {f.rule}: {f.detail}", markup=False, highlight=False)
    return 1


def run_stats(args: argparse.Namespace) -> int:
    from pipeline.stats_command import run_stats

    return run_stats(
        args.path,
        args.compare,
        args.plots,
        args.json,
        from_shards=args.from_shards,
        config=args.config,
        overrides=args.overrides,
        master=args.master,
    )


def run_smoke(args: argparse.Namespace) -> int:
    from pipeline.card import refresh_card
    from pipeline.trainer.report import SMOKE_FILE, print_report
    from pipeline.trainer.train import smoke
    from stages.logic.storage import is_s3, join

    require_train_extra("smoke")
    storage = StorageOptions(args.s3_endpoint_url)
    settings = smoke_settings(args, storage)
    if not args.no_validate:
        refuse_invalid(args.path, storage)
    report = smoke(args.path, settings, storage, progress=not args.json)
    write_text(join(args.path, SMOKE_FILE), report.to_json(), storage)
    if args.json:
        print(report.to_json())
    else:
        print_report(report.data, Console())
    if not is_s3(args.path):
        console.print(f"data card updated: {refresh_card(Path(args.path))}")
    return 0 if report.ok else 1


def refuse_invalid(path: str, storage: StorageOptions) -> None:
    """Training on an output that breaks the contract would test the wrong thing."""
    from pipeline.validate import validate

    with console.status(f"validating {path}"):
        result = validate(path, storage)
    if not result.ok:
        first = result.failures[0]
        raise LongmixError(
            f"{path} fails validation ({len(result.failures)} problems; first: {first.directory}"
            f" {first.rule}: {first.detail}); `longmix validate` lists them, --no-validate "
            "trains anyway"
        )


def smoke_settings(args: argparse.Namespace, storage: StorageOptions) -> SmokeConfig:
    """The smoke section of `--config`, else of the config the run saved beside its output."""
    from pipeline.config import load_config, smoke_config
    from stages.logic.storage import exists, join, read_text

    origin = args.config or join(args.path, "config.resolved.yaml")
    if args.config:
        section = load_config(args.config).smoke.model_dump()
    elif exists(origin, storage):
        section = (yaml.safe_load(read_text(origin, storage)) or {}).get("smoke")
    else:
        section = None
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"smoke.steps={args.steps}")
    return smoke_config(section, overrides, origin)


def run_card(args: argparse.Namespace) -> int:
    from pipeline.card import VALIDATION_FILE, write_card
    from pipeline.validate import require_output, validate

    require_output(args.path, StorageOptions())
    validation = None
    if not args.no_validate:
        require_train_extra("card")
        with console.status(f"validating {args.path}"):
            validation = json.loads(validate(args.path, StorageOptions()).to_json())
        write_text(
            str(Path(args.path) / VALIDATION_FILE),
            json.dumps(validation, indent=2),
            StorageOptions(),
        )
    written = write_card(Path(args.path), Path(args.cards), validation)
    console.print(f"data card written to {written} and {Path(args.path) / 'README.md'}")
    if validation is not None and not validation["ok"]:
        count = len(validation["failures"])
        console.print(f"[bold red]{args.path} is not valid[/]: {count} problems, in the card")
        return 1
    return 0


def require_train_extra(command: str) -> None:
    """`prepare` runs without torch (a lean cluster environment); these commands need it."""
    missing = [name for name in ("streaming", "torch") if importlib.util.find_spec(name) is None]
    if missing:
        raise LongmixError(
            f"longmix {command} reads shards with mosaicml-streaming and trains with torch; "
            f"this environment lacks {', '.join(missing)}: pip install 'longmix[train]'"
        )


COMMANDS = {
    "card": run_card,
    "prepare": run_prepare,
    "demo": run_demo,
    "validate": run_validate,
    "stats": run_stats,
    "smoke": run_smoke,
}


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Scrubbed(sys.stdout), Scrubbed(sys.stderr)
    # py4j logs a traceback for every call a dying JVM drops (some through the root logger);
    # the user gets one line instead.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    logging.getLogger().addFilter(not_from_py4j)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(parser().parse_args(argv))
    finally:
        sys.stdout, sys.stderr = streams


def not_from_py4j(record: logging.LogRecord) -> bool:
    return "py4j" not in record.pathname


def run(args: argparse.Namespace) -> int:
    """The command, with every failure turned into one line and an exit status."""
    try:
        return COMMANDS[args.command](args)
    except LongmixError as exc:
        return fail(str(exc), 2)
    except KeyboardInterrupt:
        return stopped(*STOPS[signal.SIGINT])
    except Terminated:
        return stopped(*STOPS[signal.SIGTERM])
    except Exception as exc:
        if SIGNALLED:  # a JVM stopped by the same signal failed the call first
            return stopped(*STOPS[SIGNALLED[0]])
        if args.debug:
            raise
        return unexpected(exc)


STOPS = {
    signal.SIGINT: ("interrupted; rerun the same command to resume", 130),
    signal.SIGTERM: ("terminated; rerun the same command to resume", 143),
}
SIGNALLED: list[int] = []


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that cleanup runs as for Ctrl-C (a
    BaseException, as KeyboardInterrupt is, so that no `except Exception` swallows it)."""


def on_signal(signum: int, frame) -> None:
    """Remembered, because the JVM gets the same signal (a terminal's process group) and
    may fail the call the main thread waits in before this handler raises."""
    SIGNALLED.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


def unexpected(exc: Exception) -> int:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return fail(f"disk full (no space left on device) writing {exc.filename or ''}", 2)
    cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return fail(f"{cause} (traceback in {save_traceback()}; --debug prints it)", 1)


def stopped(message: str, code: int) -> int:
    """After a signal the process ends here, after the one line: Spark's exit hooks would
    call a JVM that is dying (SIGTERM) or losing its tasks (Ctrl-C) and print py4j
    tracebacks and task errors; its log is switched off first."""
    fail(message, code)
    if spark_started():
        silence_spark()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def fail(message: str, code: int) -> int:
    # Spark's console progress bar leaves its line open when a job fails.
    fresh_line = "\n" if spark_started() else ""
    console.print(
        f"{fresh_line}longmix: error: {message}", markup=False, highlight=False, soft_wrap=True
    )
    return code


def save_traceback() -> str:
    """The current exception's traceback, secrets scrubbed, in a log file: its path."""
    folder = Path(tempfile.gettempdir()) / "longmix-logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(scrub(traceback.format_exc()))
    return str(path)


class Scrubbed:
    """A text stream that masks secrets in everything printed through it."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(scrub(text))

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.exit(main())

"""What each `longmix` command does, given its parsed arguments: the exit status. Heavy
modules (Spark, torch) are imported by the command that needs them, so that every command
starts fast and `prepare` never loads the trainer's dependencies."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

from longmix.pipeline.tables import (
    contamination_table,
    documents_table,
    duplicates_table,
    long_tokens_table,
    mix_table,
    packing_table,
    share_over_table,
    skipped_table,
    validation_table,
)
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.storage import StorageOptions, exists, is_s3, join, read_text, write_text

if TYPE_CHECKING:
    from longmix.pipeline.config import SmokeConfig

console = Console(stderr=True)  # progress and warnings
log = logging.getLogger("longmix")  # notices: `longmix: ...` lines on stderr
# Results (tables) on stdout; as wide as they need when written to a file or a pipe, where
# rich would otherwise assume 80 columns and cut them.
results = Console(width=None if sys.stdout.isatty() else 200)


def run_prepare(args: argparse.Namespace) -> int:
    from longmix.pipeline.config import load_config
    from longmix.pipeline.driver import prepare

    config = load_config(args.config, args.overrides)
    report = prepare(config, args.master)
    if report.data.get("already_complete"):
        log.info(
            f"{config.output}: already complete with this config and these inputs; nothing to do"
        )
        return 0
    print_summary(report.data)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from longmix.pipeline.config import load_config
    from longmix.pipeline.demo import build_corpus
    from longmix.pipeline.driver import prepare
    from longmix.pipeline.presets import config_path

    workdir = Path(args.workdir).resolve()
    with console.status(f"building the demo corpus in {workdir / 'corpus'}"):
        build_corpus(workdir / "corpus")
    config = load_config(config_path("demo"), [f"run.workdir={workdir}", *args.overrides])
    report = prepare(config, args.master)
    print_summary(report.data)
    outputs = ", ".join(f"{name} in {uri}" for name, uri in report["outputs"].items())
    log.info(f"demo done: {outputs}; report in {config.output}/_report.json")
    return 0


def print_summary(report: dict[str, Any]) -> None:
    results.print(documents_table(report).rich())
    skipped = skipped_table(report)
    if skipped.rows:
        results.print(skipped.rich())
    duplicates = duplicates_table(report["duplicates"]) if "duplicates" in report else None
    if duplicates and duplicates.rows:
        results.print(duplicates.rich())
    if "contamination" in report:
        results.print(contamination_table(report["contamination"]).rich())
    if "packing" in report:
        results.print(packing_table(report).rich())
    if "mix" in report:
        results.print(mix_table(report["mix"]).rich())
    seconds = sum(report["stage_seconds"].values())
    log.info(f"{report['input']['files']} input files, stages took {seconds:.1f} s")


def run_validate(args: argparse.Namespace) -> int:
    from longmix.pipeline.validate import validate

    require_train_extra("validate")
    with console.status(f"validating {args.path}"):
        result = validate(args.path, StorageOptions(args.s3_endpoint_url))
    if args.json:
        print(result.to_json())
        return 0 if result.ok else 1
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {warning}", soft_wrap=True, highlight=False)
    if result.ok:
        results.print(validation_table(args.path, result.samples, result.tokens).rich())
        return 0
    count = len(result.failures)
    results.print(f"[bold red]{count} problem{'' if count == 1 else 's'}[/] in {args.path}:")
    for f in result.failures:
        where = ", ".join(
            part
            for part in (f.directory, f.shard, None if f.sample is None else f"sample {f.sample}")
            if part
        )
        results.print(f"  {where}: {f.rule}: {f.detail}", markup=False, highlight=False)
    return 1


def run_peek(args: argparse.Namespace) -> int:
    """One sample decoded: documents apart, trained text marked (coloured on a terminal)."""
    from longmix.pipeline.peek import peek, plain_lines

    require_train_extra("peek")
    peeked = peek(Path(args.path), args.sample)
    if args.json:
        print(peeked.to_json())
        return 0
    if not sys.stdout.isatty():
        print("\n".join(plain_lines(peeked)))
        return 0
    out = Console()
    out.print(plain_lines(peeked)[0], style="bold", highlight=False)
    for number, document in enumerate(peeked.documents, start=1):
        out.rule(f"document {number} of {len(peeked.documents)}", style="cyan")
        for piece in document:
            trained = piece.trained and peeked.masked
            out.print(piece.text, style="green" if trained else None, end="", markup=False)
        out.print()
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """The paper's length tables of an output, a dataset or raw sources; side by side with
    `--compare`; histograms with `--plots`."""
    from longmix.pipeline.plots import histogram_png
    from longmix.pipeline.stats import load_stats, paper_tables

    out = results
    if (args.path is None) == (args.config is None):
        raise LongmixError("give an output or dataset PATH, or --config CONFIG for raw sources")
    if args.config:
        named = {Path(args.config).stem: source_stats(args.config, args.overrides, args.master)}
    else:
        with console.status(f"reading {args.path}"):
            named = {name_of(args.path): load_stats(args.path, args.from_shards)}
    if args.compare:
        named[name_of(args.compare)] = load_stats(args.compare, args.from_shards)
    views = {name: paper_tables(stats) for name, stats in named.items()}
    if args.plots:
        for name, stats in named.items():
            for stage, histograms in stats["histograms"].items():
                if histograms:
                    histogram_png(stats, stage, Path(args.plots) / f"{name}-{stage}.png")
    if args.json:
        print(json.dumps({"tables": views, "stats": named}, indent=1, sort_keys=True))
        return 0
    for name, view in views.items():
        if "long_tokens_per_source" in view:
            table = long_tokens_table(
                view["long_tokens_per_source"], named[name]["long_document_tokens"]
            )
            table.title = f"{name}: {table.title}"
            out.print(table.rich())
    share = {n: v["share_over_after_packing"] for n, v in views.items()}
    out.print(share_over_table(share).rich())
    if args.plots:
        log.info(f"histograms written to {args.plots}")
    return 0


def source_stats(config_path: str, overrides: list[str], master: str | None) -> dict[str, Any]:
    """Statistics of raw sources: the config's read, concatenation, tokenization and packing
    run through Spark into a temporary folder, nothing else written."""
    from longmix.pipeline.config import load_config
    from longmix.pipeline.driver import prepare
    from longmix.pipeline.stats import STATS_FILE

    with tempfile.TemporaryDirectory(prefix="longmix-stats-") as scratch:
        settings = [*overrides, f"run.output={scratch}", "run.until=sequences"]
        prepare(load_config(config_path, settings), master)
        return json.loads((Path(scratch) / STATS_FILE).read_text())


def name_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def run_smoke(args: argparse.Namespace) -> int:
    from longmix.pipeline.card import refresh_card
    from longmix.pipeline.trainer.report import SMOKE_FILE, print_report
    from longmix.pipeline.trainer.train import smoke

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
        card = refresh_card(Path(args.path))
        console.print(f"longmix: data card updated: {card}", markup=False, highlight=False)
    return 0 if report.ok else 1


def refuse_invalid(path: str, storage: StorageOptions) -> None:
    """Training on an output that breaks the contract would test the wrong thing."""
    from longmix.pipeline.validate import validate

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
    from longmix.pipeline.config import load_config, smoke_config

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
    if args.no_eval:
        overrides.append("smoke.eval.enabled=false")
    return smoke_config(section, overrides, origin)


def run_card(args: argparse.Namespace) -> int:
    from longmix.pipeline.card import VALIDATION_FILE, write_card
    from longmix.pipeline.validate import require_output, validate

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
    "peek": run_peek,
}

"""The `longmix` command line: arguments, and every failure turned into one line and an exit
status (user errors exit 2, with no traceback). The commands themselves are in
`pipeline.commands`."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from longmix.pipeline.commands import COMMANDS, console
from longmix.pipeline.spark import silence_spark, spark_started
from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.redaction import scrub
from longmix.stages.logic.sources import PRESETS

DESCRIPTION = "Long-context training data (the ProLong recipe) prepared with Spark, as MDS shards."


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="longmix", description=DESCRIPTION)
    root.add_argument(
        "--debug", action="store_true", help="print the full traceback of an unexpected error"
    )
    root.add_argument(
        "--verbose", action="store_true", help="keep the JVM's start-up lines (log4j, Hadoop)"
    )
    commands = root.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="run the pipeline on a config")
    prepare.add_argument(
        "config",
        help="YAML config: sources (your own files by `format`, or a preset: "
        f"{', '.join(sorted(PRESETS))}), tokenizer, packing, mix; see the README's "
        '"Bring your own data" and docs/CONFIG.md',
    )
    add_common(prepare)

    validate = commands.add_parser("validate", help="check every sample of an output")
    validate.add_argument("path", help="the run's output folder (local or s3://)")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.add_argument("--s3-endpoint-url", help="an S3-compatible endpoint")

    peek = commands.add_parser(
        "peek", help="one sample decoded, its documents apart and trained text marked"
    )
    peek.add_argument("path", help="a local output folder, or one directory of it")
    peek.add_argument("--sample", type=int, default=0, help="which sample, in index order")
    peek.add_argument("--json", action="store_true", help="print the sample as JSON")

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
        "--no-eval",
        action="store_true",
        help="skip the held-out loss by position and the Self-Extend evaluation",
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


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Scrubbed(sys.stdout), Scrubbed(sys.stderr)
    # py4j logs a traceback for every call a dying JVM drops (some through the root logger);
    # the user gets one line instead.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    logging.getLogger().addFilter(not_from_py4j)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    notices = logging.StreamHandler()  # longmix's own notices, one line each on stderr
    # On a terminal a notice first clears the progress line it may interrupt.
    clear = "\r\033[K" if sys.stderr.isatty() else ""
    notices.setFormatter(logging.Formatter(f"{clear}longmix: %(message)s"))
    logger = logging.getLogger("longmix")
    logger.addHandler(notices)
    logger.setLevel(logging.INFO)
    try:
        return run(parser().parse_args(argv))
    finally:
        logger.removeHandler(notices)
        sys.stdout, sys.stderr = streams


def not_from_py4j(record: logging.LogRecord) -> bool:
    return "py4j" not in record.pathname


def run(args: argparse.Namespace) -> int:
    """The command, with every failure turned into one line and an exit status."""
    if args.verbose:
        os.environ["LONGMIX_VERBOSE"] = "1"
    try:
        return COMMANDS[args.command](args)
    except LongmixError as exc:
        return fail(exc.user_line(), 2)
    except KeyboardInterrupt:
        return stopped(*STOPS[signal.SIGINT])
    except Terminated:
        return stopped(*STOPS[signal.SIGTERM])
    except BrokenPipeError:  # a reader that stopped early (`| head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
    # A progress line on a terminal may be open when a job fails; a log file gets none.
    fresh_line = "\n" if spark_started() and sys.stderr.isatty() else ""
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

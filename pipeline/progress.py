"""A run's progress in the user's units on stderr: files and bytes read, documents,
sequences and tokens written, the rate and the time left. On a terminal one line rewritten in
place every second; in a log (stderr not a terminal) one `longmix: progress: ...` line every
30 seconds. The numbers are the finished tasks' (`stages.progress`), so they move a task at
a time."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from longmix.stages.progress import Progress

TERMINAL_SECONDS = 1.0
LOG_SECONDS = 30.0  # LONGMIX_PROGRESS_SECONDS overrides either


def amount(value: float, unit: str) -> str:
    """1,234 tokens / 12.3 K tokens / 4.5 M tokens/s; bytes as 1.2 GB, 45.6 MB/s."""
    glue = "" if unit.startswith("B") else " "
    for size, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= max(size, 1e4):
            return f"{value / size:.1f} {prefix}{glue}{unit}"
    return f"{value:,.0f} {unit}"


def left(done: float, total: float, seconds: float) -> str:
    if done <= 0 or seconds <= 0 or total <= done:
        return ""
    remaining = (total - done) * seconds / done
    return (
        f", about {remaining:.0f} s left"
        if remaining < 120
        else f", about {remaining / 60:.0f} min left"
    )


def describe(planned: dict[str, Any], done: dict[str, int], seconds: dict[str, float]) -> str:
    """The line for the phase now running: reading until every read task has finished, then
    packing. `seconds`: how long each phase has run."""
    if done.get("read_tasks", 0) < planned.get("read_tasks", 0) or "pack_tasks" not in planned:
        read, total = done.get("bytes", 0), planned.get("bytes", 0)
        took = seconds.get("reading", 0.0)
        rate = f", {amount(read / took, 'B/s')}" if took and read else ""
        return (
            f"reading: {done.get('files', 0):,} of {planned.get('files', 0):,} files, "
            f"{amount(read, 'B')} of {amount(total, 'B')}, "
            f"{done.get('documents', 0):,} documents{rate}{left(read, total, took)}"
        )
    tasks, total = done.get("pack_tasks", 0), planned["pack_tasks"]
    took = seconds.get("packing", 0.0)
    tokens = done.get("tokens", 0)
    rate = f", {amount(tokens / took, 'tokens/s')}" if took and tokens else ""
    return (
        f"packing: {tasks:,} of {total:,} tasks, {done.get('sequences', 0):,} sequences, "
        f"{amount(tokens, 'tokens')}{rate}{left(tasks, total, took)}"
    )


@contextlib.contextmanager
def shown(progress: Progress, stream: TextIO | None = None) -> Iterator[None]:
    """Progress lines while the block runs (the phase clock starts with it)."""
    stream = stream or sys.stderr
    terminal = stream.isatty()
    default = TERMINAL_SECONDS if terminal else LOG_SECONDS
    interval = float(os.environ.get("LONGMIX_PROGRESS_SECONDS", default))
    stop = threading.Event()
    began = {"reading": time.monotonic()}

    def line() -> str:
        done = progress.counts()
        now = time.monotonic()
        if done.get("read_tasks", 0) >= progress.planned.get("read_tasks", 1):
            began.setdefault("packing", now)
        return describe(progress.planned, done, {k: now - t for k, t in began.items()})

    def show() -> None:
        while not stop.wait(interval):
            text = line()
            stream.write(f"\r\033[K{text}" if terminal else f"longmix: progress: {text}\n")
            stream.flush()

    thread = threading.Thread(target=show, name="longmix-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        # A log ends with the totals; a terminal's line makes room for the summary.
        stream.write("\r\033[K" if terminal else f"longmix: progress: {line()}\n")
        stream.flush()

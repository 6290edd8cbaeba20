"""Peak resident memory of a command and every process it starts (JVM, Python workers)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import psutil

PEAKS: dict[str, int] = {}


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss = proc.memory_info().rss
            name = f"{proc.pid}:{proc.name()}"
        except psutil.Error:
            continue
        total += rss
        PEAKS[name] = max(PEAKS.get(name, 0), rss)
    return total


def run_measured(command: list[str], interval: float = 0.1, **kwargs) -> tuple[int, int]:
    """(exit code, peak summed RSS in bytes of the whole process tree)."""
    process = subprocess.Popen(command, **kwargs)
    root = psutil.Process(process.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(root))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    return code, peak

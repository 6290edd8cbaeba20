"""Peak resident memory of a command and every process it starts (JVM, Python workers)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil


def tree_rss(root: psutil.Process) -> dict[str, int]:
    """Resident bytes of each live process of the tree, by `pid:name`."""
    sizes = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            sizes[f"{proc.pid}:{proc.name()}"] = proc.memory_info().rss
        except psutil.Error:
            continue
    return sizes


@dataclass
class Measured:
    code: int
    peak: int = 0  # bytes, the whole tree at its largest
    largest: dict[str, int] = field(default_factory=dict)  # each process at its largest

    def biggest(self) -> str:
        name, size = max(self.largest.items(), key=lambda kv: kv[1], default=("-", 0))
        return f"{name.split(':', 1)[-1]} {size / 1e9:.2f} GB"


def run_measured(command: list[str], interval: float = 0.1, **kwargs) -> Measured:
    """Run `command`, sampling the resident memory of it and all its descendants."""
    process = subprocess.Popen(command, **kwargs)
    root = psutil.Process(process.pid)
    measured = Measured(code=0)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                sizes = tree_rss(root)
                measured.peak = max(measured.peak, sum(sizes.values()))
                for name, size in sizes.items():
                    measured.largest[name] = max(measured.largest.get(name, 0), size)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    measured.code = process.wait()
    done.set()
    sampler.join()
    return measured

"""Faults a test injects through the config (`faults`), each once: the marker file a fault
creates records that it happened. Never part of the config digest."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from longmix.stages.logic.storage import StorageOptions, claim

HOLD_SECONDS = 600.0


@dataclass(frozen=True)
class Faults:
    # "<marker path>:<samples>": the first attempt to reach that many samples in a unit
    # dies, to exercise retries.
    fail_once: str | None = None
    # A marker path: the task that commits the first unit creates it and waits there, so
    # that a test kills the run half-way however fast the units are written.
    hold_after_commit: str | None = None
    # A marker path: the first read task to open an input file writes the file's URI into
    # it and waits until `<marker>.go` exists, so that a test changes that file mid-run.
    hold_before_read: str | None = None


NO_FAULTS = Faults()


def fail_once_at(faults: Faults) -> int | None:
    if not faults.fail_once:
        return None
    marker, _, samples = faults.fail_once.rpartition(":")
    return int(samples) if first_time(marker) else None


def hold_once(faults: Faults) -> None:
    if faults.hold_after_commit and first_time(faults.hold_after_commit):
        time.sleep(HOLD_SECONDS)


def hold_before_read(faults: Faults, uri: str) -> None:
    marker = faults.hold_before_read
    if not marker or not first_time(marker, uri):
        return
    deadline = time.monotonic() + HOLD_SECONDS
    while not os.path.exists(f"{marker}.go") and time.monotonic() < deadline:
        time.sleep(0.05)


def first_time(marker: str, text: str = "") -> bool:
    """Creates `marker` holding `text`, whole when it appears; False if it existed."""
    return claim(marker, text, StorageOptions())

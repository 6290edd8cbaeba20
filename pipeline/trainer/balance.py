"""ProLong's minibatch reordering and what it buys.

Each device takes its share of a step's micro-batches and runs them one after another; the
devices wait for each other at every micro-step (FSDP gathers and reduces per layer), so a
micro-step lasts as long as its most expensive micro-batch. ProLong sorts each device's
micro-batches by the sum of squared document lengths, so that devices meet at every
micro-step with micro-batches of similar attention cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longmix.stages.logic.stats import segment_lengths


def attended_pairs(indices: np.ndarray) -> int:
    """Query-key pairs attended under document masking: sum of n(n+1)/2 over documents (full
    causal attention over the sequence is L(L+1)/2)."""
    lengths = segment_lengths(indices)
    return int((lengths * (lengths + 1) // 2).sum())


def device_order(costs: list[int], devices: int, reorder: bool) -> np.ndarray:
    """(micro-steps, devices) positions into the step's micro-batches: device d takes a
    contiguous slice of the step (as streaming partitions samples over ranks), sorted by
    decreasing cost when reordering."""
    slices = np.arange(len(costs)).reshape(devices, -1)
    if reorder:
        slices = np.array([sorted(s, key=lambda i: -costs[i]) for s in slices])
    return slices.T


@dataclass(frozen=True)
class Balance:
    """Attention cost of the slowest device over the mean device, summed over micro-steps
    (1.0 is perfect balance), with and without reordering."""

    devices: int
    imbalance_without: float
    imbalance_with: float

    @property
    def speedup(self) -> float:
        """How much shorter the attention part of a step gets."""
        return self.imbalance_without / self.imbalance_with


def step_imbalance(costs: list[int], devices: int, reorder: bool) -> tuple[float, float]:
    """(sum over micro-steps of the slowest device's cost, of the mean device's cost)."""
    table = np.asarray(costs, dtype=np.float64)[device_order(costs, devices, reorder)]
    return float(table.max(axis=1).sum()), float(table.mean(axis=1).sum())


def balance(steps: list[list[int]], devices: int) -> Balance:
    """The load-balance effect of reordering over every step of the run."""
    ratios = []
    for reorder in (False, True):
        slowest, mean = np.sum([step_imbalance(c, devices, reorder) for c in steps], axis=0)
        ratios.append(float(slowest / mean) if mean else 1.0)
    return Balance(devices, *ratios)

"""The domain mix: how many packed sequences of each (domain, length) go into the output.

Fractions are of tokens. With a budget, each (domain, length) gets round(budget x fraction /
length) sequences: fewer than it has are chosen by a seeded rank, more are made by repeating
every sequence `target // available` times and the lowest-ranked `target % available` once
more (or the run fails, as configured). Without a budget everything is kept once.
"""

from __future__ import annotations

from dataclasses import dataclass

from longmix.stages.logic.errors import LongmixError
from longmix.stages.logic.schemas import SpecKey


class MixError(LongmixError):
    """A mix that cannot be met; the message names the domain and the numbers."""


@dataclass(frozen=True)
class MixTarget:
    domain: str
    length: int
    directory: str
    available: int
    target: int

    @property
    def repeat(self) -> float:
        """How many times each sequence appears on average (below 1: a sample of them)."""
        return self.target / self.available if self.available else 0.0

    @property
    def copies(self) -> int:
        return self.target // self.available if self.available else 0

    @property
    def extra(self) -> int:
        """Sequences that get one copy more than `copies` (the lowest seeded ranks)."""
        return self.target % self.available if self.available else 0


def directory_name(domain: str, length: int, suffixed: bool) -> str:
    """Release naming: `book-524288` for long or multi-length domains, `fineweb-edu` else."""
    return f"{domain}-{length}" if suffixed else domain


def plan_mix(
    available: dict[SpecKey, int],
    directories: dict[SpecKey, str],
    fractions: dict[tuple[str, int | None], float],
    tokens: int | None,
    shortfall: str,
) -> dict[SpecKey, MixTarget]:
    """A target per (domain, length) that has sequences or a fraction."""
    if tokens is None:
        return {
            key: MixTarget(key[0], key[1], directories[key], count, count)
            for key, count in sorted(available.items())
            if count
        }
    shares = key_fractions(available, fractions)
    targets = {}
    for key, fraction in sorted(shares.items()):
        count = available.get(key, 0)
        target = round(tokens * fraction / key[1])
        if target and not count:
            raise MixError(f"mix: {key[0]} at {key[1]} tokens has no sequences to draw from")
        if target > count and shortfall == "fail":
            raise MixError(
                f"mix: {key[0]} at {key[1]} needs {target:,} sequences "
                f"({target * key[1]:,} tokens) but has {count:,}; "
                "set mix.shortfall: repeat to upsample it"
            )
        targets[key] = MixTarget(key[0], key[1], directories[key], count, target)
    return targets


def key_fractions(
    available: dict[SpecKey, int], fractions: dict[tuple[str, int | None], float]
) -> dict[SpecKey, float]:
    """Per (domain, length) fractions; a whole-domain fraction is shared among its lengths
    by their tokens."""
    shares: dict[SpecKey, float] = {}
    for (domain, length), fraction in fractions.items():
        if length is not None:
            shares[(domain, length)] = fraction
            continue
        keys = [key for key in available if key[0] == domain and available[key]]
        if not keys:
            raise MixError(f"mix: domain {domain!r} has no sequences to draw from")
        tokens = {key: available[key] * key[1] for key in keys}
        total = sum(tokens.values())
        shares.update({key: fraction * tokens[key] / total for key in keys})
    return shares

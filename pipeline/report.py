"""The run report (`_report.json` beside the output): what went in, what came out, what was
left out and why, and how long each stage took. Each section is written once, by the step
that owns it; the driver merges them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from longmix.pipeline import __version__
from longmix.stages.logic.storage import StorageOptions, join, read_text

if TYPE_CHECKING:
    from longmix.stages.logic.tokenizers import Tokenizer

REPORT_FILE = "_report.json"


def output_tokenizer(output: str, storage: StorageOptions | None = None) -> Tokenizer:
    """The tokenizer the output's report names (a `transformers` folder must still exist)."""
    from longmix.stages.logic.tokenizers import TokenizerSpec, load_tokenizer

    report = json.loads(read_text(join(output, REPORT_FILE), storage or StorageOptions()))
    identity = report["tokenizer"]
    return load_tokenizer(TokenizerSpec(identity["backend"], identity["name"]))


class RunReport:
    def __init__(self, run_name: str, config_digest: str):
        self.data: dict[str, Any] = {
            "run": run_name,
            "longmix_version": __version__,
            "config_sha256": config_digest,
            "stage_seconds": {},
        }

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> RunReport:
        """The saved report of a run that finished with the same config."""
        report = cls(saved["run"], saved["config_sha256"])
        report.data = {**saved, "already_complete": True}
        return report

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.data["stage_seconds"][name] = round(elapsed, 3)

    def add(self, **sections: Any) -> None:
        """New sections; one that is already there has another owner."""
        taken = sorted(set(sections) & set(self.data))
        if taken:
            raise ValueError(f"report sections written twice: {', '.join(taken)}")
        self.data.update(sections)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True)

"""The run's input files, listed on the driver: names and sizes only, never their text."""

from __future__ import annotations

from pipeline.config import Config
from pipeline.specs import storage_options
from stages.logic.errors import LongmixError
from stages.logic.read import ReadTask
from stages.logic.storage import expand


def discover(config: Config) -> list[ReadTask]:
    """Every input file of every source.

    A file's `relative` name (which document ids carry) is its path under the deepest folder
    shared by all files of its source: unique within the source, and the same for the same
    layout on local disk and on S3."""
    storage = storage_options(config)
    tasks = []
    for name, source in config.sources.items():
        entries = {}
        for pattern in source.paths():
            found = expand(config.resolve(pattern), storage)
            if not found:
                raise LongmixError(f"source {name!r}: no files match {pattern}")
            entries.update({entry.uri: entry for entry in found})
        common = common_folder(list(entries))
        tasks += [
            ReadTask(name, uri, uri[len(common) :].lstrip("/"), entry.size, entry.modified)
            for uri, entry in sorted(entries.items())
        ]
    return tasks


def common_folder(uris: list[str]) -> str:
    parts = [uri.split("/")[:-1] for uri in uris]
    shared = parts[0]
    for other in parts[1:]:
        size = next(
            (i for i, (a, b) in enumerate(zip(shared, other, strict=False)) if a != b), None
        )
        shared = shared[: min(len(shared), len(other)) if size is None else size]
    return "/".join(shared)

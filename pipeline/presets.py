"""Where the bundled configs are: inside the wheel, or in the repository's `configs/`."""

from pathlib import Path

from stages.logic.errors import LongmixError

PACKAGED = Path(__file__).parent / "configs"
REPOSITORY = Path(__file__).parent.parent / "configs"


def config_path(name: str) -> Path:
    for folder in (PACKAGED, REPOSITORY):
        candidate = folder / f"{name}.yaml"
        if candidate.exists():
            return candidate
    raise LongmixError(f"no bundled config named {name!r}")

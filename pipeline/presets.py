"""Where the bundled configs are: `longmix/configs` (in the repository, a link to `configs/`)."""

from pathlib import Path

from longmix.stages.logic.errors import LongmixError

BUNDLED = Path(__file__).resolve().parent.parent / "configs"


def config_path(name: str) -> Path:
    candidate = BUNDLED / f"{name}.yaml"
    if not candidate.exists():
        raise LongmixError(f"no bundled config named {name!r}")
    return candidate

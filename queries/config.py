"""Where the warehouse is: `--data-dir` beats `HARVEST_DATA_DIR`, which beats `harvest.toml`, then ./data.

Readers resolve the directory the same way the harvester does, so a notebook opened in the project
folder reads what last night's job wrote without being told where.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ENV_VAR = "HARVEST_DATA_DIR"
CONFIG_FILE = "harvest.toml"


class QueryConfigError(ValueError):
    """The configuration names no usable data directory (bad harvest.toml, empty variable)."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    """The absolute warehouse directory from the argument, the environment, harvest.toml or ./data."""
    here = cwd or Path.cwd()
    if data_dir is not None:
        return (here / Path(data_dir)).resolve()
    env = os.environ.get(ENV_VAR)
    if env is not None:
        if not env.strip():
            raise QueryConfigError(f"{ENV_VAR} is set but empty")
        return (here / env).resolve()
    toml_path = here / CONFIG_FILE
    if toml_path.is_file():
        try:
            settings = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise QueryConfigError(f"{toml_path}: not valid TOML ({exc})") from exc
        value = settings.get("data_dir")
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise QueryConfigError(f"{toml_path}: data_dir must be a non-empty string")
            return (toml_path.parent / value).resolve()
    return (here / "data").resolve()

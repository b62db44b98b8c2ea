"""Connection and job defaults: built-ins ← `harvest.toml` ← environment ← command-line options.

The nightly job runs unattended, so everything it needs can live in a file next to it or in the
environment of the scheduler (cron, systemd) instead of a long command line.

Built-in defaults:
  host 127.0.0.1, port 7497 (TWS paper trading; IB Gateway uses 4002 paper / 4001 live, TWS live 7496),
  client_id 17 (a fixed id reserved for the scheduled job: not 0, which binds manual TWS orders, and
  not 1, which interactive scripts and notebooks usually take), data_dir ./data.
`harvest.toml` (in the working directory, or the file named by HARVEST_CONFIG) may set any key of
Settings at top level or under a `[harvest]` table. Environment: HARVEST_HOST, HARVEST_PORT,
HARVEST_CLIENT_ID, HARVEST_DATA_DIR.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

PACINGS = ("strict", "adaptive")  # --pacing: IB's hard rules for every request, or answer times for >= 1 min
QUARANTINE_NIGHTS = 3  # a bar refused at the door this many nights in a row is no longer asked for
CONFIG_ENV = "HARVEST_CONFIG"
CONFIG_FILE = "harvest.toml"
ENVIRONMENT = {
    "HARVEST_HOST": "host",
    "HARVEST_PORT": "port",
    "HARVEST_CLIENT_ID": "client_id",
    "HARVEST_DATA_DIR": "data_dir",
}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names its source and key."""


@dataclass(frozen=True)
class Settings:
    """Where to connect and where to store; every field can come from file, environment or CLI."""

    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 17
    data_dir: str = "data"  # a folder, or s3://bucket/prefix (harvester.warehouse.storage)
    bar_sizes: tuple[str, ...] = ("1 day",)
    what_to_show: str | None = None  # None: each asset class's default (ibrules.WHAT_TO_SHOW_BY_SEC_TYPE)
    use_rth: bool = True
    adjusted: bool = False  # also keep one ADJUSTED_LAST daily series per contract (the adjusted_bars view)
    commit_every_s: float = 180.0
    target_bars: int = 5000
    max_in_flight: int = 6
    claim_batch: int = 25  # series a job claims at a time; jobs sharing a warehouse split the work by it
    vacuum_retention_hours: float = 168.0  # `harvest compact` keeps files a week-old snapshot still reads
    quarantine_nights: int = QUARANTINE_NIGHTS  # nights a refused bar is asked for again before giving up
    pacing: str = "strict"  # or "adaptive": bars of 1 min and up paced by answer times (ib.adaptive)

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host: must not be empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: must be within 1..65535, got {self.port}")
        if self.client_id < 0:
            raise ConfigError(f"client_id: must be >= 0, got {self.client_id}")
        if self.commit_every_s <= 0:
            raise ConfigError(f"commit_every_s: must be positive, got {self.commit_every_s}")
        if self.target_bars <= 0:
            raise ConfigError(f"target_bars: must be positive, got {self.target_bars}")
        if self.claim_batch <= 0:
            raise ConfigError(f"claim_batch: must be positive, got {self.claim_batch}")
        if self.vacuum_retention_hours < 0:
            raise ConfigError(f"vacuum_retention_hours: must be >= 0, got {self.vacuum_retention_hours}")
        if self.quarantine_nights < 1:
            raise ConfigError(f"quarantine_nights: must be >= 1, got {self.quarantine_nights}")
        if self.pacing not in PACINGS:
            raise ConfigError(f"pacing: must be one of {', '.join(PACINGS)}, got {self.pacing!r}")
        if not 1 <= self.max_in_flight < 50:
            raise ConfigError(f"max_in_flight: must be within 1..49, got {self.max_in_flight}")


_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(key: str, value: Any, origin: str) -> Any:
    kind = _TYPES[key]
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("1", "true", "yes")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if key == "data_dir":
            text = str(value)
            if not text.strip():  # never "the current directory" by accident
                raise ConfigError(f"{origin}: data_dir is empty; name a folder or s3://bucket/prefix")
            return text if "://" in text else str(Path(text).expanduser())
        if kind == "tuple[str, ...]":
            items = [value] if isinstance(value, str) else list(value)
            return tuple(str(v) for v in items)
        return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {key} = {value!r} is not a valid {kind}") from None


def _file_values(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    table = document.get("harvest", document)
    values = {}
    for key, value in table.items():
        if key == "harvest" and isinstance(value, dict):
            continue
        if key not in _TYPES:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(_TYPES)}")
        values[key] = _coerce(key, value, str(path))
    return values


def config_path(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The TOML file in effect: HARVEST_CONFIG (must exist) or ./harvest.toml if present."""
    environ = os.environ if environ is None else environ
    named = environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: no such file")
        return path
    local = (cwd or Path.cwd()) / CONFIG_FILE
    return local if local.is_file() else None


def resolve_settings(
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge the layers; `overrides` are CLI values (None means "not given")."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path(environ, cwd)
    if path is not None:
        values.update(_file_values(path))
    for variable, key in ENVIRONMENT.items():
        if environ.get(variable, "") != "":
            values[key] = _coerce(key, environ[variable], f"environment {variable}")
    for key, value in (overrides or {}).items():
        if key not in _TYPES:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None and value != ():
            values[key] = _coerce(key, value, f"option {key}")
    return replace(Settings(), **values)


def user_temp_dir(name: str) -> Path:
    """`<system temp>/<name>-<uid>`: a folder of this user's scratch on this machine (Windows has no uid, and
    its temp folder is the user's own already)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"{name}-{os.getuid() if hasattr(os, 'getuid') else 'user'}"

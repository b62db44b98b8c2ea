"""User tables (CSV or Parquet) for the simulator: read whole, and name a bad cell's place for the error.

Replay files and corporate-action files share this: CSV lines count from the header (line 1), `#`
comment lines ignored; Parquet has no lines, so the row number and column are named instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_table(path: Path, what: str, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The file as a DataFrame (`text_columns` kept as text in CSV); unreadable → ValueError naming it."""
    try:
        if is_parquet(path):
            return pd.read_parquet(path)
        return pd.read_csv(path, comment="#", dtype={c: str for c in text_columns})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc})") from None


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def where(path: Path, index: int, column: str) -> str:
    """file:line for CSV (header is line 1; comment lines ignored), file: row N column C for Parquet."""
    if is_parquet(path):
        return f"{path}: row {index + 1} column {column}"
    return f"{path}:{_csv_line(path, index)}: column {column}"


def _csv_line(path: Path, index: int) -> int:
    data_lines = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.startswith("#"):
                continue
            if data_lines == index + 1:
                return number
            data_lines += 1
    return index + 2

"""What a fetch that overlaps stored bars says about them: unchanged, a split, or revised bars.

IB serves history adjusted as of the day you ask and revises recent bars (docs/history-changes.md §3), so
every nightly request re-reads one stored session and compares. The rule: when every open and close of
the overlap is the stored one times one constant ratio, far enough from 1, it is a split (ratio < 1) or a
reverse split (ratio > 1) and volume moves inversely; whatever still differs after that rescale, or any
difference at all without one, is a revision, and the newer fetch wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa

from harvester.warehouse.tables import BARS_SCHEMA, REVISED_COLUMNS

SPLIT_MIN_CHANGE = 0.01  # a price ratio within 1 % of 1 is a revision, never a split
PRICE_TOLERANCE = (1e-6, 0.005)  # relative, absolute (half a cent: adjusted prices may be rounded)
RATIO_DENOMINATOR = 100  # a measured ratio within 1e-4 of p/q (q ≤ 100) is taken as exactly p/q
_PRICES = ("open", "high", "low", "close", "wap")


@dataclass(frozen=True)
class OverlapVerdict:
    """`price_ratio` = new / stored price (0.1 for a 10:1 split); `revised` holds the bars still differing
    (ts, session_date, <col>_old, <col>_new), the stored values rescaled first when it is a split."""

    kind: str  # "same" | "split" | "revision"
    price_ratio: float
    revised: pd.DataFrame

    @property
    def shares_ratio(self) -> float:
        """New shares per old share, as splits are announced (10 for 10:1, 0.1 for 1:10)."""
        return _snap(1.0 / self.price_ratio)


def compare_overlap(stored: pa.Table, fetched: pa.Table) -> OverlapVerdict:
    """Compare the bars of one series present in both (matched on ts)."""
    old = stored.select(BARS_SCHEMA.names).to_pandas()
    new = fetched.select(BARS_SCHEMA.names).to_pandas()
    both = old.merge(new, on="ts", suffixes=("_old", "_new"))
    if both.empty or not _differing(both, 1.0).any():
        return OverlapVerdict("same", 1.0, _revised(both, np.zeros(len(both), bool)))
    ratio = _split_ratio(both)
    if ratio is None:
        return OverlapVerdict("revision", 1.0, _revised(both, _differing(both, 1.0)))
    ratio = 1.0 / _snap(1.0 / ratio)
    return OverlapVerdict("split", ratio, _revised(both, _differing(both, ratio, tolerant=True), ratio))


def matches_rescaled(stored: pa.Table, fetched: pa.Table, price_ratio: float) -> bool:
    """The fetched bars are the stored ones rescaled by `price_ratio` (same bars, values within tolerance)."""
    old = stored.select(BARS_SCHEMA.names).to_pandas()
    new = fetched.select(BARS_SCHEMA.names).to_pandas()
    both = old.merge(new, on="ts", suffixes=("_old", "_new"))
    if both.empty or len(both) != len(old) or len(both) != len(new):
        return False
    return not _differing(both, price_ratio, tolerant=True).any()


def rescale(rows: pa.Table, con_id: int, price_ratio: float) -> pa.Table:
    """The rows of `con_id` with prices × ratio and volume ÷ ratio (bar counts do not change)."""
    frame = rows.to_pandas()
    hit = (frame["con_id"] == con_id).to_numpy()
    for column in _PRICES:
        frame.loc[hit, column] = frame.loc[hit, column] * price_ratio
    frame.loc[hit, "volume"] = frame.loc[hit, "volume"] / price_ratio
    return pa.Table.from_pandas(frame, schema=rows.schema, preserve_index=False)


def close_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal within PRICE_TOLERANCE (NULL equals NULL)."""
    rel, absolute = PRICE_TOLERANCE
    with np.errstate(invalid="ignore"):
        near = np.abs(a - b) <= np.maximum(absolute, rel * np.abs(b))
    return near | (pd.isna(a) & pd.isna(b))


def _split_ratio(both: pd.DataFrame) -> float | None:
    """The constant ratio of every open and close, if there is one and it is far from 1."""
    old_close = both["close_old"].to_numpy(dtype=float)
    if (old_close <= 0).any():
        return None
    ratio = float(np.median(both["close_new"].to_numpy(dtype=float) / old_close))
    if abs(ratio - 1.0) <= SPLIT_MIN_CHANGE:
        return None
    for column in ("open", "close"):
        if not close_to(both[f"{column}_old"].to_numpy(dtype=float) * ratio,
                        both[f"{column}_new"].to_numpy(dtype=float)).all():
            return None
    return ratio


def _differing(both: pd.DataFrame, ratio: float, tolerant: bool = False) -> np.ndarray:
    """Rows whose values differ once the stored ones are rescaled by `ratio` (exactly, unless tolerant)."""
    differ = np.zeros(len(both), dtype=bool)
    for column in REVISED_COLUMNS:
        factor = ratio if column in _PRICES else 1.0 / ratio if column == "volume" else 1.0
        old = both[f"{column}_old"].to_numpy(dtype=float) * factor
        new = both[f"{column}_new"].to_numpy(dtype=float)
        same = close_to(old, new) if tolerant else (old == new) | (np.isnan(old) & np.isnan(new))
        differ |= ~same
    return differ


def _revised(both: pd.DataFrame, hit: np.ndarray, ratio: float = 1.0) -> pd.DataFrame:
    columns = ["ts", "session_date_new", *(f"{c}_{a}" for c in REVISED_COLUMNS for a in ("old", "new"))]
    out = both.loc[hit, columns].rename(columns={"session_date_new": "session_date"}).reset_index(drop=True)
    if ratio != 1.0:
        for column in _PRICES:
            out[f"{column}_old"] = out[f"{column}_old"] * ratio
        out["volume_old"] = out["volume_old"] / ratio
    return out


def _snap(ratio: float) -> float:
    near = Fraction(ratio).limit_denominator(RATIO_DENOMINATOR)
    return float(near) if abs(float(near) - ratio) <= 1e-4 * ratio else ratio

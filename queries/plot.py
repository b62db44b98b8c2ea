"""PNG pictures of the warehouse: a coverage heat map (series × day) and candlesticks of one symbol.

Matplotlib runs on the Agg backend (no display; works in cron, CI and over ssh).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from harvester import bar_size as lookup_bar_size
from queries.connection import connect
from queries.readthrough import bars

MISSING, EMPTY, COVERED, CLOSED = 0, 1, 2, 3
_COLOURS = ListedColormap(["#d62728", "#bbbbbb", "#2ca02c", "#ffffff"])


class PlotError(ValueError):
    """Nothing to draw for the request (no series, no bars); the message says what was asked."""


def coverage_grid(data_dir: str | os.PathLike[str] | None, bar_size: str,
                  symbol: str | None = None) -> tuple[list[str], list, np.ndarray]:
    """Rows = series labels, columns = sessions in the covered span, cells MISSING/EMPTY/COVERED.

    A session counts as covered when any 'bars' interval overlaps it, verified-empty when only
    'empty' intervals do, missing otherwise (the same sessions `gaps` lists, where it is sure).
    """
    name = lookup_bar_size(bar_size).ib_name
    con = connect(data_dir)
    cells = con.execute(
        """SELECT coalesce(c.symbol, c.con_id::VARCHAR) || ' ' || c.what_to_show || CASE WHEN c.use_rth
                  THEN '' ELSE ' ext' END AS series, x.session_date,
                  max(CASE c.kind WHEN 'bars' THEN 2 ELSE 1 END) AS state
           FROM coverage c JOIN sessions x ON x.con_id = c.con_id AND x.use_rth = c.use_rth
             AND x.open_ts < c.end_ts AND x.close_ts > c.start_ts
           WHERE c.bar_size = $bar_size AND ($symbol IS NULL OR c.symbol = $symbol)
           GROUP BY ALL""",
        {"bar_size": name, "symbol": symbol},
    ).df()
    cells["session_date"] = pd.to_datetime(cells.session_date).dt.date
    if cells.empty:
        raise PlotError(f"no coverage recorded for bar size {name!r}" + (f" and {symbol}" if symbol else ""))
    days = con.execute(
        "SELECT DISTINCT session_date FROM sessions WHERE session_date BETWEEN ? AND ? ORDER BY 1",
        [cells.session_date.min(), cells.session_date.max()],
    ).df().session_date.dt.date.tolist()
    labels = sorted(cells.series.unique())
    grid = np.full((len(labels), len(days)), MISSING)
    row = {label: i for i, label in enumerate(labels)}
    col = {d: j for j, d in enumerate(days)}
    for r in cells.itertuples():
        grid[row[r.series], col[r.session_date]] = r.state
    return labels, days, grid


MAX_LABELLED_ROWS = 60


def coverage_map(output: Path, bar_size: str = "1 day", symbol: str | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Draw the coverage heat map to `output` (PNG)."""
    labels, days, grid = coverage_grid(data_dir, bar_size, symbol)
    # One labelled row per series up to MAX_LABELLED_ROWS; a whole universe fits one page, every k-th labelled.
    height = min(0.25 * len(labels) + 1.5, 0.25 * MAX_LABELLED_ROWS + 1.5)
    fig, ax = plt.subplots(figsize=(12, max(2.5, height)), dpi=100)
    ax.imshow(grid, aspect="auto", cmap=_COLOURS, vmin=0, vmax=3, interpolation="nearest")
    step = max(1, -(-len(labels) // MAX_LABELLED_ROWS))
    ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=8 if len(labels) < 40 else 6)
    ticks = np.linspace(0, len(days) - 1, min(len(days), 10)).astype(int)
    ax.set_xticks(ticks, [str(days[i]) for i in ticks], rotation=30, ha="right", fontsize=8)
    ax.set_title(f"Coverage of {bar_size} bars by exchange session")
    ax.legend(handles=[Patch(color=_COLOURS(COVERED), label="covered"),
                       Patch(color=_COLOURS(EMPTY), label="verified empty"),
                       Patch(color=_COLOURS(MISSING), label="missing")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


def candles(symbol: str, output: Path, bar_size: str = "1 day", start: str | None = None,
            end: str | None = None, data_dir: str | os.PathLike[str] | None = None,
            max_bars: int = 400) -> Path:
    """Draw candlesticks (and volume) of `symbol` to `output`; only the last `max_bars` bars stay legible."""
    frame = bars(symbol, bar_size, start, end, data_dir=data_dir)
    if frame.empty:
        raise PlotError(f"no {bar_size} bars stored for {symbol}")
    frame = frame.tail(max_bars).reset_index(drop=True)
    stamp = "%Y-%m-%d %H:%M" if lookup_bar_size(bar_size).intraday else "%Y-%m-%d"
    x = np.arange(len(frame))
    up = (frame["close"] >= frame["open"]).to_numpy()
    colour = np.where(up, "#2ca02c", "#d62728")
    fig, (price, volume) = plt.subplots(2, 1, sharex=True, figsize=(12, 6), dpi=100,
                                        gridspec_kw={"height_ratios": [3, 1]})
    price.vlines(x, frame["low"], frame["high"], color=colour, linewidth=0.8)
    body_low = np.minimum(frame["open"], frame["close"])
    body = np.maximum(np.abs(frame["close"] - frame["open"]), 1e-9)
    price.bar(x, body, bottom=body_low, color=colour, width=0.7)
    price.set_title(f"{symbol} {bar_size} ({frame['ts'].iloc[0]:{stamp}} – {frame['ts'].iloc[-1]:{stamp}} UTC)")
    price.grid(alpha=0.3)
    volume.bar(x, frame["volume"].fillna(0), color=colour, width=0.7)
    volume.set_ylabel("volume")
    ticks = np.linspace(0, len(frame) - 1, min(len(frame), 8)).astype(int)
    volume.set_xticks(ticks, [pd.Timestamp(frame["ts"].iloc[i]).strftime(stamp) for i in ticks],
                      rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output

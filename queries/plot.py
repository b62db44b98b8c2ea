"""Pictures of the warehouse: a coverage heat map (series × day) and candlesticks of one symbol.

Figures are built with matplotlib's object API (`Figure`, no pyplot), so no display is needed (cron, CI,
ssh) and a notebook's own backend is left alone. Given an output path they are saved as PNG; without one
they are returned, and Jupyter draws a returned Figure inline.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from harvester import bar_size as lookup_bar_size
from queries.connection import connect, default_calendar, limit_memory
from queries.readthrough import bars

MISSING, EMPTY, COVERED, CLOSED = 0, 1, 2, 3


class Picture(Figure):
    """A Figure that Jupyter draws inline by itself (its PNG), pyplot or not."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()

_COLOURS = ListedColormap(["#d62728", "#bbbbbb", "#2ca02c", "#ffffff"])


class PlotError(ValueError):
    """Nothing to draw for the request (no series, no bars); the message says what was asked."""


def coverage_grid(data_dir: str | os.PathLike[str] | None, bar_size: str,
                  symbol: str | None = None) -> tuple[list[str], list, np.ndarray]:
    """Rows = series labels, columns = sessions in the covered span, cells MISSING/EMPTY/COVERED.

    A session is covered when it holds bars, verified empty when a fetch covered it and IB had none
    there (years before a listing inside one long daily answer, or an 'empty' answer), missing
    otherwise (the same sessions `gaps` lists, where it is sure). A label names its whatToShow only
    where the grid holds more than one.
    """
    name = lookup_bar_size(bar_size).ib_name
    con = connect(data_dir)
    limit_memory(con)
    # Cells as integers (row, column, state) in DuckDB, never a frame of (symbol, date) rows: a universe's
    # daily history is millions of cells (the frame took 1 GB for the S&P 500).
    con.execute(
        """CREATE TEMP TABLE cells AS
           WITH held AS (SELECT con_id, what_to_show, use_rth, session_date, true AS has_bars FROM bars
                         WHERE bar_size = $bar_size AND ($symbol IS NULL OR symbol = $symbol)
                         GROUP BY ALL)
           SELECT coalesce(c.symbol, c.con_id::VARCHAR) AS symbol, c.what_to_show, c.use_rth, x.session_date,
                  CASE WHEN bool_or(held.has_bars) THEN 2 ELSE 1 END::TINYINT AS state
           FROM coverage c JOIN series USING (con_id, bar_size, what_to_show, use_rth)
           JOIN sessions x ON x.calendar = series.calendar AND x.open_ts < c.end_ts AND x.close_ts > c.start_ts
           LEFT JOIN held ON held.con_id = c.con_id AND held.what_to_show = c.what_to_show
                AND held.use_rth = c.use_rth AND held.session_date = x.session_date
           WHERE c.bar_size = $bar_size AND ($symbol IS NULL OR c.symbol = $symbol)
           GROUP BY ALL""",
        {"bar_size": name, "symbol": symbol},
    )
    ((count, first, last, shows),) = con.execute(
        "SELECT count(*), min(session_date), max(session_date), count(DISTINCT what_to_show) > 1 FROM cells"
    ).fetchall()
    if not count:
        raise PlotError(f"no coverage recorded for bar size {name!r}" + (f" and {symbol}" if symbol else ""))
    what = "' ' || what_to_show" if shows else "''"  # a label names its whatToShow only where several are
    label = f"symbol || {what} || CASE WHEN use_rth THEN '' ELSE ' ext' END"
    con.execute(f"CREATE TEMP TABLE labelled AS SELECT {label} AS series, session_date, state FROM cells")
    labels = [r[0] for r in con.execute("SELECT DISTINCT series FROM labelled ORDER BY series").fetchall()]
    con.execute("CREATE TEMP TABLE days AS SELECT DISTINCT session_date FROM sessions WHERE calendar IN "
                "(SELECT calendar FROM series) AND session_date BETWEEN ? AND ? ORDER BY 1", [first, last])
    days = [r[0] for r in con.execute("SELECT session_date FROM days ORDER BY 1").fetchall()]
    cells = con.sql(
        """WITH r AS (SELECT series, row_number() OVER (ORDER BY series) - 1 AS i FROM (
                      SELECT DISTINCT series FROM labelled)),
                d AS (SELECT session_date, row_number() OVER (ORDER BY session_date) - 1 AS j FROM days)
           SELECT r.i::INTEGER AS i, d.j::INTEGER AS j, l.state FROM labelled l JOIN r USING (series)
           JOIN d USING (session_date)""").to_arrow_reader(CELLS_PER_FETCH)
    grid = np.full((len(labels), len(days)), MISSING, dtype=np.int8)
    for at in cells:  # a batch at a time: the S&P 500's 5 M cells fetched at once held 100 MB
        grid[at["i"].to_numpy(), at["j"].to_numpy()] = at["state"].to_numpy()
    return labels, days, grid


CELLS_PER_FETCH = 500_000


MAX_LABELLED_ROWS = 60
MAX_DRAWN_SESSIONS = 2400  # twice the picture's pixels across: more columns than that only cost memory


def fit_columns(grid: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """The grid cut to at most `width` columns, each the worst state of the `step` sessions it stands for
    (a missing session stays visible however long the span), and `step`. imshow of the S&P 500's whole daily
    history (503 × 10,000 cells) held 300 MB of colour arrays."""
    step = max(1, -(-grid.shape[1] // width))
    if step == 1:
        return grid, 1
    padded = np.pad(grid, ((0, 0), (0, -grid.shape[1] % step)), constant_values=np.iinfo(grid.dtype).max)
    return padded.reshape(grid.shape[0], -1, step).min(axis=2), step


def _finish(fig: Figure, output: Path | None) -> Path | Figure:
    fig.tight_layout()
    if output is None:
        return fig
    fig.savefig(output)
    return output


def coverage_map(output: Path | None, bar_size: str = "1 day", symbol: str | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> Path | Figure:
    """Draw the coverage heat map to `output` (PNG), or return the Figure when `output` is None."""
    labels, days, grid = coverage_grid(data_dir, bar_size, symbol)
    # One labelled row per series up to MAX_LABELLED_ROWS; a whole universe fits one page, every k-th labelled.
    height = min(0.25 * len(labels) + 1.5, 0.25 * MAX_LABELLED_ROWS + 1.5)
    fig = Picture(figsize=(12, max(2.5, height)), dpi=100)
    ax = fig.subplots()
    shown, per_column = fit_columns(grid, MAX_DRAWN_SESSIONS)
    # Coloured here as bytes: given the states and a colour map, imshow held them as float RGBA (8× the size).
    ax.imshow(_COLOURS(shown, bytes=True), aspect="auto", interpolation="nearest")
    step = max(1, -(-len(labels) // MAX_LABELLED_ROWS))
    ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=8 if len(labels) < 40 else 6)
    ticks = np.linspace(0, shown.shape[1] - 1, min(shown.shape[1], 10)).astype(int)
    ax.set_xticks(ticks, [str(days[i * per_column]) for i in ticks], rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("exchange session")
    ax.set_ylabel("series (ext: all hours)" if any(label.endswith(" ext") for label in labels) else "series")
    ax.set_title(f"Coverage of {bar_size} bars by exchange session"
                 + (f" ({len(labels)} series, every {step}th named)" if step > 1 else ""))
    ax.legend(handles=[Patch(color=_COLOURS(COVERED), label="covered"),
                       Patch(color=_COLOURS(EMPTY), label="verified empty"),
                       Patch(color=_COLOURS(MISSING), label="missing")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _finish(fig, output)


def candle_positions(session_no: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """x of each bar (by its exchange session number, oldest first) and the (from, to) x spans of the breaks.

    Bars of stored sessions sit side by side; each missing session between two of them leaves as many empty
    slots as a stored session has bars (the median), so a hole reads as a hole, never as one night."""
    if len(session_no) == 0:
        return np.zeros(0), []
    session_no = np.asarray(session_no, dtype=np.int64)
    starts = np.r_[True, session_no[1:] != session_no[:-1]]
    per_session = max(1, int(np.median(np.diff(np.r_[np.flatnonzero(starts), len(session_no)]))))
    rank = np.cumsum(starts) - 1  # the bar's session among the stored ones
    missing_before = (session_no - session_no[0]) - rank
    x = np.arange(len(session_no)) + per_session * missing_before
    jumps = np.flatnonzero(np.diff(missing_before) > 0) + 1
    return x.astype(float), [(x[i - 1] + 0.5, x[i] - 0.5) for i in jumps]


def candles(symbol: str, output: Path | None, bar_size: str = "1 day", start: str | None = None,
            end: str | None = None, data_dir: str | os.PathLike[str] | None = None,
            max_bars: int = 400) -> Path | Figure:
    """Draw candlesticks (and volume) of `symbol` to `output` (PNG; None: return the Figure). Only the last
    `max_bars` bars stay legible: a longer range is cut to them and the title says so. Missing exchange
    sessions leave a shaded break."""
    con = connect(data_dir)
    frame = bars(symbol, bar_size, start, end, con=con)
    if frame.empty:
        raise PlotError(f"no {bar_size} bars stored for {symbol}")
    total = len(frame)
    frame = frame.tail(max_bars).reset_index(drop=True)
    calendar = con.execute("SELECT calendar FROM contract_calendars WHERE con_id = ?",
                           [int(frame.con_id.iloc[0])]).fetchall()
    numbers = con.execute(
        "SELECT session_date, session_no FROM sessions WHERE calendar = ? AND session_date BETWEEN ? AND ?",
        [calendar[0][0] if calendar else default_calendar(), frame.session_date.min(), frame.session_date.max()],
    ).df()
    by_date = dict(zip(pd.to_datetime(numbers.session_date), numbers.session_no, strict=True))
    session_no = pd.to_datetime(frame.session_date).map(by_date).ffill().bfill().fillna(0).to_numpy()
    x, breaks = candle_positions(session_no)
    stamp = "%Y-%m-%d %H:%M" if lookup_bar_size(bar_size).intraday else "%Y-%m-%d"
    up = (frame["close"] >= frame["open"]).to_numpy()
    colour = np.where(up, "#2ca02c", "#d62728")
    fig = Picture(figsize=(12, 6), dpi=100)
    price, volume = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for left, right in breaks:
        for ax in (price, volume):
            ax.axvspan(left, right, color="#d62728", alpha=0.12, linewidth=0)
    if breaks:
        price.legend(handles=[Patch(color="#d62728", alpha=0.12, label="missing sessions")], loc="upper left",
                     fontsize=8)
    price.vlines(x, frame["low"], frame["high"], color=colour, linewidth=0.8)
    body_low = np.minimum(frame["open"], frame["close"])
    body = np.maximum(np.abs(frame["close"] - frame["open"]), 1e-9)
    price.bar(x, body, bottom=body_low, color=colour, width=0.7)
    cut = f"; the last {len(frame):,} of {total:,} bars in the range (--max-bars)" if total > len(frame) else ""
    price.set_title(f"{symbol} {bar_size} ({frame['ts'].iloc[0]:{stamp}} – {frame['ts'].iloc[-1]:{stamp}} UTC{cut})")
    price.grid(alpha=0.3)
    volume.bar(x, frame["volume"].fillna(0), color=colour, width=0.7)
    volume.set_ylabel("volume")
    ticks = np.linspace(0, len(frame) - 1, min(len(frame), 8)).astype(int)
    volume.set_xticks(x[ticks], [pd.Timestamp(frame["ts"].iloc[i]).strftime(stamp) for i in ticks],
                      rotation=30, ha="right", fontsize=8)
    return _finish(fig, output)

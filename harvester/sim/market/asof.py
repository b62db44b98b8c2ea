"""History as IB serves it on a given day: split-adjusted as of then, dividend-adjusted for ADJUSTED_LAST,
the latest session not yet settled (docs/history-changes.md §1).

Generated prices are today's view of history (adjusted for every split in the table), so as of an earlier
day they are the future splits' product larger, one constant for the whole series. Replayed prices are
as traded, so as of a day each session divides by the splits between it and that day. Dividend factors
follow the usual backward method: each dividend D going ex on day e multiplies every earlier price by
1 − D / C, C the close of the session before e, both in the shares of day e.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from harvester.sim.market import pricepath as pp
from harvester.sim.market.barcolumns import BarColumns


def scale_columns(bars: BarColumns, prices: np.ndarray | float, volume: np.ndarray | float) -> BarColumns:
    """Prices and WAP times `prices`, volume times `volume`; IB's -1 sentinels stay -1."""
    def times(values: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
        return np.where(values == -1, values, values * factor)

    return replace(bars, open=bars.open * prices, high=bars.high * prices, low=bars.low * prices,
                   close=bars.close * prices, wap=times(bars.wap, prices), volume=times(bars.volume, volume))


def dividend_factors(sessions: np.ndarray, dividends: list[tuple[datetime.date, float]],
                     close_before: Callable[[datetime.date], float | None]) -> np.ndarray:
    """Per bar (by session date): the product of 1 − D / C over the dividends going ex after its session.

    `dividends` are those already in effect; `close_before(e)` is the close of the session before e in
    e's shares (None before the first bar: nothing to adjust)."""
    factors = np.ones(len(sessions))
    for ex_date, amount in dividends:
        close = close_before(ex_date)
        if close is None or close <= amount:
            continue
        factors[sessions < np.datetime64(ex_date)] *= 1.0 - amount / close
    return factors


def unsettled(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
              hit: np.ndarray, fraction: float, tick: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, volume) of bars whose late prints have not arrived yet: volume short by `fraction`,
    high and low that much nearer the body (on the tick, OHLC still consistent)."""
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    keep = 1.0 - fraction
    new_high = np.where(hit, np.maximum(pp.round_to_tick(top + (high - top) * keep, tick), top), high)
    new_low = np.where(hit, np.minimum(pp.round_to_tick(bottom - (bottom - low) * keep, tick), bottom), low)
    new_volume = np.where(hit, np.rint(volume * keep), volume).astype(volume.dtype)
    return new_high, new_low, new_volume


def revise_arrays(arrays: pp.BarArrays, hit: np.ndarray, fraction: float, tick: float) -> pp.BarArrays:
    if not hit.any():
        return arrays
    high, low, volume = unsettled(arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume, hit, fraction,
                                  tick)
    return replace(arrays, high=high, low=low, volume=volume)


def revise_columns(bars: BarColumns, hit: np.ndarray, fraction: float, tick: float) -> BarColumns:
    if not hit.any():
        return bars
    volume = np.where(bars.volume == -1, 0.0, bars.volume)
    high, low, volume = unsettled(bars.open, bars.high, bars.low, bars.close, volume, hit, fraction, tick)
    return replace(bars, high=high, low=low, volume=np.where(bars.volume == -1, -1.0, volume))

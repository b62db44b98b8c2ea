"""Counter-hashed price paths that split a known bar into child bars which aggregate back to it exactly.

Top-down generation is what makes coarse bars cheap and exact: a session's bar is decided first (O, H,
L, C, volume, wap, trade count, time-averaged price), then its minutes are drawn so that first open,
last close, max high, min low, volume sum, count sum and the volume-weighted wap reproduce it; a
minute is split into seconds the same way. Children are laid out in fixed-width rows so a parent's
children never depend on which other parents were generated in the same call (chunking invariance).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic): a counter-based hash."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_keys(*keys: np.ndarray | int) -> np.ndarray:
    """Hash a tuple of integer keys (broadcast) into one uint64 stream."""
    h = np.zeros(1, dtype=np.uint64)
    for key in keys:
        h = splitmix64(h ^ np.asarray(key, dtype=np.int64).astype(np.uint64))
    return h


def uniform(h: np.ndarray) -> np.ndarray:
    """[0, 1) from the top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(h: np.ndarray) -> np.ndarray:
    """Standard normal by Box-Muller from two 32-bit halves of one hash."""
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) / 4294967297.0
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) / 4294967296.0
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def round_cents(x: np.ndarray) -> np.ndarray:
    return np.round(x, 2)


def ceil_cents(x: np.ndarray) -> np.ndarray:
    return np.ceil(np.round(x * 100.0, 6)) / 100.0


def floor_cents(x: np.ndarray) -> np.ndarray:
    return np.floor(np.round(x * 100.0, 6)) / 100.0


def round_to_tick(x: np.ndarray, tick: float) -> np.ndarray:
    """Each price at its nearest multiple of the tick, as the double nearest that decimal (k·p/q with the
    tick p/q in lowest terms: one correctly rounded division), so its shortest text is the tick's decimal."""
    step = Fraction(repr(tick)).limit_denominator(10**9)
    p, q = step.numerator, step.denominator
    return np.rint(x * (q / p)) * p / q


@dataclass
class BarArrays:
    """Columnar bars. `mid` is the time-averaged trade price (BID_ASK open/close derive from it)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64 shares
    wap: np.ndarray
    count: np.ndarray  # int64 trades
    mid: np.ndarray

    def __len__(self) -> int:
        return len(self.open)

    def take(self, index: np.ndarray) -> BarArrays:
        return BarArrays(*(getattr(self, f)[index] for f in FIELDS))


FIELDS = ("open", "high", "low", "close", "volume", "wap", "count", "mid")


def concat(parts: list[BarArrays]) -> BarArrays:
    return BarArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


def aggregate(child: BarArrays, starts: np.ndarray, weights: np.ndarray) -> BarArrays:
    """Bars made of consecutive children; group g is child[starts[g]:starts[g+1]]; `weights` time-weight mid."""
    ends = np.append(starts[1:], len(child)) - 1
    volume = np.add.reduceat(child.volume, starts)
    notional = np.add.reduceat(child.volume * child.wap, starts)
    close = child.close[ends]
    wap = np.divide(notional, volume, out=close.copy(), where=volume > 0)
    return BarArrays(
        open=child.open[starts],
        high=np.maximum.reduceat(child.high, starts),
        low=np.minimum.reduceat(child.low, starts),
        close=close,
        volume=volume,
        wap=wap,
        count=np.add.reduceat(child.count, starts),
        mid=np.add.reduceat(child.mid * weights, starts) / np.add.reduceat(weights, starts),
    )


def expand(parent: BarArrays, sizes: np.ndarray, seeds: np.ndarray, width: int) -> BarArrays:
    """Children of each parent (sizes[j] ≤ width of them), flattened parent by parent.

    Every parent needs count ≥ 1 and high > low; a parent with fewer trades than children leaves the
    rest of its children without volume (wap = close there), like quiet seconds on IB.
    """
    rows = len(parent)
    col = np.arange(width)
    valid = col[None, :] < sizes[:, None]
    n = sizes[:, None].astype(np.float64)
    key = seeds[:, None] ^ (col[None, :].astype(np.uint64) + np.uint64(1)) * _GOLDEN
    streams = [splitmix64(key ^ np.uint64(s)) for s in range(6)]
    O, H, L, C = (getattr(parent, f)[:, None] for f in ("open", "high", "low", "close"))
    t = (col[None, :] + 1) / n

    walk = np.cumsum(np.where(valid, normal(streams[0]), 0.0), axis=1)
    last = np.take_along_axis(walk, sizes[:, None] - 1, axis=1)
    bridge = (walk - t * last) / np.sqrt(n)
    path = np.log(O) + (np.log(C) - np.log(O)) * t + 0.45 * np.log(H / L) * bridge
    close = np.clip(round_cents(np.exp(path)), L, H)
    close[np.arange(rows), sizes - 1] = parent.close
    open_ = np.concatenate([O, close[:, :-1]], axis=1)
    span = (H - L) * 0.12
    high = np.minimum(H, round_cents(np.maximum(open_, close) + span * uniform(streams[1])))
    low = np.maximum(L, round_cents(np.minimum(open_, close) - span * uniform(streams[2])))
    masked_close = np.where(valid, close, np.nan)
    high[np.arange(rows), np.nanargmax(masked_close, axis=1)] = parent.high
    low[np.arange(rows), np.nanargmin(masked_close, axis=1)] = parent.low

    active = _active(streams[3], valid, parent.count)
    profile = (0.4 + uniform(streams[4])) * (1.0 + 1.5 * (2.0 * t - 1.0) ** 2)
    n_active = active.sum(axis=1)
    volume = active + _allocate(parent.volume - n_active, np.where(active, profile, 0.0))
    count = active + _allocate(parent.count - n_active, volume.astype(np.float64))

    weights_time = valid.astype(np.float64)
    mid, high, low = _fit_mean((open_ + close) / 2, low, high, weights_time, parent.mid, L, H)
    wap, high, low = _fit_mean(
        (high + low + close) / 3, low, high, volume.astype(np.float64), parent.wap, L, H
    )
    wap = np.where(volume > 0, wap, close)
    flat = valid.ravel()
    return BarArrays(*(a.ravel()[flat] for a in (open_, high, low, close, volume, wap, count, mid)))


def _active(h: np.ndarray, valid: np.ndarray, trades: np.ndarray) -> np.ndarray:
    """Which children trade: all, or a hashed choice of `trades` of them when there are fewer trades.

    Only rows with fewer trades than children are ranked (two argsorts are most of this function's cost).
    """
    active = valid.copy()
    quiet = np.flatnonzero(trades < valid.sum(axis=1))
    if len(quiet):
        keys = np.where(valid[quiet], uniform(h[quiet]), 2.0)
        rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
        active[quiet] = (rank < trades[quiet, None]) & valid[quiet]
    return active


def _allocate(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split integer totals over a row in proportion to weights; the parts sum exactly to the total."""
    cum = np.cumsum(weights, axis=1)
    share = np.divide(cum, cum[:, -1:], out=np.zeros_like(cum), where=cum[:, -1:] > 0)
    edges = np.minimum(np.floor(share * total[:, None]).astype(np.int64), total[:, None])
    edges[:, -1] = total
    edges[cum[:, -1] <= 0] = 0
    return np.diff(edges, axis=1, prepend=0)


def _fit_mean(
    base: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    weights: np.ndarray,
    target: np.ndarray,
    floor_: np.ndarray,
    cap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values inside each child's [low, high] whose weighted row mean is exactly `target`.

    Blends each value toward its child's high (or low); if even the highs are too low, widens the
    highs toward the parent high (never past it), so the parent's range is kept.
    """
    total = weights.sum(axis=1, keepdims=True)
    tgt = target[:, None]

    def mean(x: np.ndarray) -> np.ndarray:
        return (weights * x).sum(axis=1, keepdims=True) / total

    s, hi_mean, lo_mean = mean(base), mean(high), mean(low)
    up = tgt >= s
    bound = np.where(up, high, low)
    bound_mean = np.where(up, hi_mean, lo_mean)
    inside = np.where(up, tgt <= hi_mean, tgt >= lo_mean)
    lam = np.divide(tgt - s, bound_mean - s, out=np.zeros_like(s), where=bound_mean != s)
    blended = base + lam * (bound - base)
    extreme = np.where(up, cap, floor_)
    mu = np.divide(tgt - bound_mean, extreme - bound_mean, out=np.zeros_like(s), where=extreme != bound_mean)
    widened = bound + mu * (extreme - bound)
    values = np.where(inside, blended, widened)
    new_high = np.where(~inside & up, np.maximum(high, np.minimum(cap, ceil_cents(values))), high)
    new_low = np.where(~inside & ~up, np.minimum(low, np.maximum(floor_, floor_cents(values))), low)
    return values, new_high, new_low

"""Deterministic, chunking-invariant historical bars for any instrument, bar size and whatToShow.

Each session is three segments (before, during and after the regular session: a stock's pre-market
and after-hours, a future's overnight and evening) whose bars are decided directly from hashed daily
returns (cached per instrument, so ~9,000 daily bars cost a few ms). Minutes are drawn from their segment
and seconds from their minute (see pricepath), so a daily bar is exactly its minutes' aggregate and every
coarser bar is an aggregate of finer ones. useRTH 1 serves the regular segment only; the same minutes
appear in both flavours. A segment of no minutes (forex, whose extended session is its regular one; a
future's evening on an early close) has no bars. A future has bars from its listing to its last trade
date; an index has TRADES without volume. Corporate actions and unsettled latest sessions are applied
as of the request's "now" (market/asof.py).
"""

from __future__ import annotations

import datetime
from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property

import numpy as np

from harvester.sim.market import asof
from harvester.sim.market import pricepath as pp
from harvester.sim.market.actions import CorporateActions
from harvester.sim.market.barcolumns import Bar, BarColumns
from harvester.sim.market.barsizes import BarKind, parse_bar_size
from harvester.sim.market.calendar import SessionCalendar
from harvester.sim.market.replay import ReplayBook
from harvester.sim.market.securities import Instrument, SecuritiesMaster

WHAT_TO_SHOW = frozenset({"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"})
_WITH_VOLUME = frozenset({"TRADES", "ADJUSTED_LAST"})
_SEGMENT_WIDTH = 400  # minutes a segment holds at least; US stocks' longest (regular session) is 390
_UTC = datetime.UTC
_UNIX_DAY = datetime.date(1970, 1, 1).toordinal()
HISTORIES_KEPT = 32  # instruments whose generated history stays cached (each ~1.4 MB for 35 years of sessions)


class UnsupportedWhatToShow(ValueError):
    """A whatToShow the generator has no data for."""


class InstrumentHistory:
    """Per-session segment bars of one instrument from its listing to the calendar's end (cached)."""

    def __init__(self, inst: Instrument, calendar: SessionCalendar) -> None:
        self.inst = inst
        self.calendar = calendar
        self.first = calendar.first_ordinal_on_or_after(inst.listing_date)
        last = (len(calendar.dates) if inst.last_trade_date is None
                else calendar.last_ordinal_on_or_before(inst.last_trade_date) + 1)
        if inst.delisted is not None:  # the listing moved to a new conId: no sessions from that day on
            last = min(last, calendar.first_ordinal_on_or_after(inst.delisted))
        self.ordinals = np.arange(self.first, max(self.first, last))
        cid = inst.con_id
        path = inst.path_id  # a futures chain's expiries share one price path, each a basis apart
        traits = pp.uniform(pp.hash_keys(path, 7, np.arange(5)))
        self.half_spread = 0.01 * (1 + int(traits[0] * 3))
        base = inst.price or np.exp(np.log(15.0) + traits[1] * np.log(150.0 / 15.0))
        sigma = 0.012 + 0.013 * traits[2]
        base_volume = np.exp(np.log(3e5) + traits[3] * np.log(100.0))
        trade_size = 80 + int(traits[4] * 170)
        k = self.ordinals

        def draw(stream: int) -> np.ndarray:
            return pp.normal(pp.hash_keys(cid, stream, k))

        if path == cid:
            walk = np.cumsum(sigma * draw(1))
        else:  # walked from the calendar's first session, so every expiry is at the chain's level that day
            walk = np.cumsum(sigma * pp.normal(pp.hash_keys(path, 1, np.arange(k[-1] + 1 if len(k) else 0))))[k]
            base *= np.exp(0.004 * pp.normal(pp.hash_keys(cid, 6, 0))[0])  # the contract's basis
        rth_close = pp.round_cents(base * np.exp(1.3 * np.tanh(walk / 1.3)))
        prev_close = np.concatenate([[base], rth_close[:-1]])
        rth_open = pp.round_cents(prev_close * np.exp(0.3 * sigma * draw(2)))
        ext_close = pp.round_cents(rth_close * np.exp(0.15 * sigma * draw(3)))
        prev_ext_close = np.concatenate([[base], ext_close[:-1]])
        ext_open = pp.round_cents(prev_ext_close * np.exp(0.1 * sigma * draw(4)))

        rth_o, rth_c, ext_o, ext_c = (a[k] for a in calendar.bounds(True) + calendar.bounds(False))
        self.segment_starts = np.stack([ext_o, rth_o, rth_c])  # (3, sessions) epoch seconds
        self.segment_minutes = (np.stack([rth_o, rth_c, ext_c]) - self.segment_starts) // 60
        self.width = max(_SEGMENT_WIDTH, int(self.segment_minutes.max(initial=0)))  # fixed: chunking-invariant
        self.volume = inst.sec_type != "IND"  # an index is computed, not traded: no volume
        volume_rth = base_volume * np.exp(0.35 * draw(5))
        self._segment_inputs = [  # (open, close, sigma, volume) per segment: pre, regular, after
            (ext_open, rth_open, sigma * 0.35, volume_rth * 0.02),
            (rth_open, rth_close, sigma * 1.0, volume_rth * 1.0),
            (rth_close, ext_close, sigma * 0.35, volume_rth * 0.015),
        ]
        self._trade_size = trade_size
        self._segments: dict[int, pp.BarArrays] = {}

    def segment(self, s: int) -> pp.BarArrays:
        """Segment s (0 pre-market, 1 regular, 2 after-hours) of every session, built on first use
        (regular-hours daily bars, the harvester's default, never need the other two)."""
        if s not in self._segments:
            open_, close, sigma, volume = self._segment_inputs[s]
            self._segments[s] = _segment(
                self.inst.con_id, 10 + s, self.ordinals, open_, close, sigma, volume,
                self.segment_minutes[s], self._trade_size,
            )  # fmt: skip
        return self._segments[s]

    @cached_property
    def daily_ext(self) -> pp.BarArrays:
        """Whole extended sessions: the segments with minutes combined, as their minutes would aggregate."""
        pre, rth, post = (self.segment(s) for s in range(3))
        stacked = pp.concat([pre, rth, post])
        n = len(rth)
        order = np.arange(3 * n).reshape(3, n).T.ravel()
        weights = self.segment_minutes.T.ravel().astype(np.float64)
        kept = weights > 0  # every session's regular segment has minutes, so each keeps at least one
        firsts = np.flatnonzero(np.diff(np.repeat(np.arange(n), 3)[kept], prepend=-1))
        return pp.aggregate(stacked.take(order[kept]), firsts, weights[kept])

    def daily(self, use_rth: bool) -> pp.BarArrays:
        return self.segment(1) if use_rth else self.daily_ext

    def minutes(self, rows: np.ndarray, use_rth: bool) -> tuple[pp.BarArrays, np.ndarray]:
        """Minute bars (and their start epochs) of the sessions at `rows` (indexes into `ordinals`)."""
        segs = np.array([1] if use_rth else [0, 1, 2])
        r_idx = np.repeat(rows, len(segs))
        s_pos = np.tile(np.arange(len(segs)), len(rows))
        s_idx = segs[s_pos]
        built = [self.segment(s) for s in segs.tolist()]
        parent = pp.BarArrays(
            *(np.stack([getattr(seg, f) for seg in built])[s_pos, r_idx] for f in pp.FIELDS)
        )
        sizes = self.segment_minutes[s_idx, r_idx]
        keep = sizes > 0
        parent, sizes, r_idx, s_idx = parent.take(keep), sizes[keep], r_idx[keep], s_idx[keep]
        seeds = pp.hash_keys(self.inst.con_id, 20 + s_idx, self.ordinals[r_idx])
        minutes = pp.expand(parent, sizes, seeds, self.width)
        starts = np.repeat(self.segment_starts[s_idx, r_idx], sizes) + 60 * _ranks(sizes)
        return minutes, starts


def _segment(
    cid: int,
    stream: int,
    k: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    sigma: float,
    volume: np.ndarray,
    minutes: np.ndarray,
    trade_size: int,
) -> pp.BarArrays:
    """One segment's bar per session: range around open/close, volume, trades, wap and mean price."""
    u = [pp.uniform(pp.hash_keys(cid, stream, k, j)) for j in range(4)]
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.maximum(pp.ceil_cents(top * np.exp(sigma * 0.8 * u[0])), top + 0.01)
    low = np.maximum(np.minimum(pp.floor_cents(bottom * np.exp(-sigma * 0.8 * u[1])), bottom - 0.01), 0.01)
    vol = np.maximum(np.rint(volume).astype(np.int64), 4 * minutes)
    count = np.maximum(vol // trade_size, minutes)
    centre = (open_ + close + high + low) / 4
    wap = np.clip(centre + (high - low) * 0.2 * (u[2] - 0.5), low, high)
    mid = np.clip((open_ + close) / 4 + wap / 2 + (high - low) * 0.1 * (u[3] - 0.5), low, high)
    return pp.BarArrays(open_, high, low, close, vol, wap, count, mid)


class MarketData:
    """The gateway's historical data: replayed files first, the generator for everything else, both as
    of the request's now (corporate actions, and with `revise_latest` the latest session unsettled)."""

    def __init__(self, master: SecuritiesMaster, replay: ReplayBook | None = None,
                 actions: CorporateActions | None = None, revise_latest: float = 0.0) -> None:
        self.master = master
        self.replay = replay
        self.actions = actions or CorporateActions.none()
        self.revise_latest = revise_latest  # fraction of volume (and of the wicks) still missing
        self._histories: OrderedDict[int, InstrumentHistory] = OrderedDict()  # least recently used first

    def history(self, inst: Instrument) -> InstrumentHistory:
        """The instrument's history, kept for the HISTORIES_KEPT most recently asked: a harvest asks for
        one instrument's windows together, and all of them held 684 MB for the S&P 500's daily bars."""
        hist = self._histories.pop(inst.con_id, None)
        if hist is None:
            hist = InstrumentHistory(inst, SessionCalendar.for_instrument(inst))
        self._histories[inst.con_id] = hist
        if len(self._histories) > HISTORIES_KEPT:
            self._histories.popitem(last=False)
        return hist

    def bars(
        self,
        inst: Instrument,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        start_utc: datetime.datetime,
        end_utc: datetime.datetime,
        now_utc: datetime.datetime,
    ) -> list[Bar]:
        """`bar_columns` as one `Bar` per bar (tests and small readers; the gateway uses the columns)."""
        return self.bar_columns(inst, bar_size, what_to_show, use_rth, start_utc, end_utc, now_utc).to_bars()

    def bar_columns(
        self,
        inst: Instrument,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        start_utc: datetime.datetime,
        end_utc: datetime.datetime,
        now_utc: datetime.datetime,
    ) -> BarColumns:
        """Bars starting in [start, end) and complete by now, oldest first; none before listing.
        ADJUSTED_LAST also includes the bar in progress, as IB's does."""
        if what_to_show not in WHAT_TO_SHOW:
            raise UnsupportedWhatToShow(f"no simulated data for whatToShow {what_to_show!r}")
        if self.replay is not None and self.replay.serves(inst):
            bars = self.replay.bars(inst, bar_size, what_to_show, use_rth, start_utc, end_utc, now_utc)
            return self._replayed_as_of(inst, BarColumns.from_bars(bars), what_to_show, use_rth, now_utc)
        size = parse_bar_size(bar_size)
        hist = self.history(inst)
        window = (int(start_utc.timestamp()), int(end_utc.timestamp()), int(now_utc.timestamp()))
        adjust = self._unsettled(hist, use_rth, now_utc)
        partial = what_to_show == "ADJUSTED_LAST"
        if size.kind is BarKind.DAY:
            arrays, starts, rows = self._daily(hist, use_rth, window, adjust, partial)
        elif size.kind in (BarKind.WEEK, BarKind.MONTH):
            arrays, starts, rows = self._periods(hist, use_rth, window, size.kind, adjust)
        else:
            arrays, starts, rows = self._intraday(hist, use_rth, window, size.seconds, adjust, partial)
        dates = (hist.calendar.day_numbers[hist.ordinals[rows]] - _UNIX_DAY).astype("datetime64[D]")
        bars = _priced(arrays, starts.astype(np.int64), dates, what_to_show, hist.half_spread, inst.min_tick,
                       hist.volume)
        dividends = self._dividend_factors(hist, what_to_show, now_utc)  # a week or month: its first session's
        if dividends is not None:
            bars = asof.scale_columns(bars, dividends[rows], 1.0)
        factor = self.actions.future_split_factor(inst.con_id, inst.local_date(now_utc))
        return bars if factor == 1.0 else asof.scale_columns(bars, factor, 1.0 / factor)  # computed prices

    def head_timestamp(self, inst: Instrument, what_to_show: str, use_rth: bool) -> datetime.datetime:
        """Start of the first bar at listing (the first session's open in the flavour)."""
        if self.replay is not None and self.replay.serves(inst):
            return self.replay.head_timestamp(inst, use_rth)
        hist = self.history(inst)
        opens, _ = hist.calendar.bounds(use_rth)
        return datetime.datetime.fromtimestamp(int(opens[hist.first]), _UTC)

    def _unsettled(self, hist: InstrumentHistory, use_rth: bool, now: datetime.datetime
                   ) -> Callable[[pp.BarArrays, np.ndarray], pp.BarArrays]:
        """What happens to session-level bars (given their rows) before they are aggregated or priced: with
        `revise_latest`, the latest closed session is served unsettled."""
        latest = hist.calendar.last_closed_ordinal(now, use_rth) - hist.first if self.revise_latest else -1

        def adjust(arrays: pp.BarArrays, rows: np.ndarray) -> pp.BarArrays:
            if latest < 0:
                return arrays
            return asof.revise_arrays(arrays, rows == latest, self.revise_latest, hist.inst.min_tick)

        return adjust

    def _dividend_factors(self, hist: InstrumentHistory, what: str, now: datetime.datetime) -> np.ndarray | None:
        """ADJUSTED_LAST's factor per session row (None: no dividend in effect), from the traded closes."""
        inst, on = hist.inst, hist.inst.local_date(now)
        dividends = [d for d in self.actions.dividends(inst.con_id) if d[0] <= on] if what == "ADJUSTED_LAST" else []
        if not dividends:
            return None
        sessions = (hist.calendar.day_numbers[hist.ordinals] - _UNIX_DAY).astype("datetime64[D]")
        closes = pp.round_to_tick(hist.daily(True).close, inst.min_tick)

        def close_before(ex_date: datetime.date) -> float | None:
            row = int(np.searchsorted(sessions, np.datetime64(ex_date))) - 1
            if row < 0:
                return None
            return float(closes[row]) * self.actions.future_split_factor(inst.con_id, ex_date)

        return asof.dividend_factors(sessions, dividends, close_before)

    def _replayed_as_of(self, inst: Instrument, bars: BarColumns, what: str, use_rth: bool,
                        now: datetime.datetime) -> BarColumns:
        """Replayed (traded) bars as of now: unsettled latest session, split divisors per session, dividends."""
        if not len(bars):
            return bars
        calendar = SessionCalendar.for_instrument(inst)
        on = inst.local_date(now)
        if self.revise_latest:
            latest = calendar.last_closed_ordinal(now, use_rth)
            if latest >= 0:
                day = np.datetime64(calendar.dates[latest])
                bars = asof.revise_columns(bars, bars.session_date == day, self.revise_latest, inst.min_tick)
        divisors = self.actions.split_divisors(inst.con_id, bars.session_date, on)
        prices = 1.0 / divisors
        if what == "ADJUSTED_LAST":
            dividends = [d for d in self.actions.dividends(inst.con_id) if d[0] <= on]

            def close_before(ex_date: datetime.date) -> float | None:
                found = self.replay.close_before(inst, ex_date)
                if found is None:
                    return None
                close, session = found
                return close / self.actions.split_divisors(inst.con_id, np.array([session], "datetime64[D]"),
                                                           ex_date)[0]

            prices = prices * asof.dividend_factors(bars.session_date, dividends, close_before)
        if (prices == 1.0).all():
            return bars
        return asof.scale_columns(bars, prices, divisors)

    @staticmethod
    def _daily(hist: InstrumentHistory, use_rth: bool, window: tuple[int, int, int], adjust, partial: bool):
        start, end, now = window
        opens, closes = (a[hist.ordinals] for a in hist.calendar.bounds(use_rth))
        inside = (opens >= start) & (opens < end)
        rows = np.flatnonzero(inside & (closes <= now))
        arrays = adjust(hist.daily(use_rth).take(rows), rows)
        live = np.flatnonzero(inside & (opens < now) & (closes > now)) if partial else rows[:0]
        if len(live):  # the session in progress, from its minutes so far (IB's unfinished bar)
            minutes, m_starts = hist.minutes(live, use_rth)
            started = np.flatnonzero(m_starts < now)
            bar = pp.aggregate(minutes.take(started), np.zeros(1, dtype=np.int64), np.full(len(started), 60.0))
            arrays, rows = pp.concat([arrays, adjust(bar, live)]), np.concatenate([rows, live])
        return arrays, opens[rows], rows

    @staticmethod
    def _periods(hist: InstrumentHistory, use_rth: bool, window: tuple[int, int, int], kind: BarKind, adjust):
        start, end, now = window
        opens, closes = (a[hist.ordinals] for a in hist.calendar.bounds(use_rth))
        period = hist.calendar.period_ids(kind is BarKind.WEEK)
        group = period[hist.ordinals]
        firsts = np.flatnonzero(np.diff(group, prepend=group[0] - 1))
        lasts = np.append(firsts[1:], len(group)) - 1
        # A period is complete when the calendar's last session of that period has closed.
        calendar_last = np.searchsorted(period, group[firsts], side="right") - 1
        _, all_closes = hist.calendar.bounds(use_rth)
        done = (opens[firsts] >= start) & (opens[firsts] < end) & (all_closes[calendar_last] <= now)
        if not done.any():
            return _empty(), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        chosen_first, chosen_last = firsts[done], lasts[done]
        rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(chosen_first, chosen_last)])
        weights = (closes - opens)[rows].astype(np.float64)
        group_starts = np.cumsum(np.concatenate([[0], (chosen_last - chosen_first + 1)[:-1]]))
        arrays = pp.aggregate(adjust(hist.daily(use_rth).take(rows), rows), group_starts, weights)
        return arrays, opens[chosen_first], chosen_first

    @staticmethod
    def _intraday(hist: InstrumentHistory, use_rth: bool, window: tuple[int, int, int], seconds: int, adjust,
                  partial: bool):
        start, end, now = window
        opens, closes = (a[hist.ordinals] for a in hist.calendar.bounds(use_rth))
        rows = np.flatnonzero((closes > start) & (opens < min(end, now)))
        minutes, m_starts = hist.minutes(rows, use_rth)
        session_row = np.repeat(rows, _minutes_per_session(hist, rows, use_rth))
        if seconds < 60:
            pick = np.flatnonzero((m_starts + 60 > start) & (m_starts < end))
            seeds = pp.hash_keys(hist.inst.con_id, 30, m_starts[pick])
            sizes = np.full(len(pick), 60, dtype=np.int64)
            fine = pp.expand(minutes.take(pick), sizes, seeds, 60)
            f_starts = np.repeat(m_starts[pick], 60) + _ranks(sizes)
            session_row = np.repeat(session_row[pick], 60)
            minutes, m_starts, step = fine, f_starts, 1
        else:
            step = 60
        if partial:  # the bar in progress is built from what has traded so far
            started = np.flatnonzero(m_starts < now)
            minutes, m_starts, session_row = minutes.take(started), m_starts[started], session_row[started]
        offset = m_starts - opens[session_row]
        bar_no = offset // seconds
        key = session_row * 100_000 + bar_no
        firsts = np.flatnonzero(np.diff(key, prepend=-1)) if len(key) else np.zeros(0, dtype=np.int64)
        if not len(firsts):
            return _empty(), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        bars = pp.aggregate(minutes, firsts, np.full(len(minutes), float(step)))
        b_starts = opens[session_row[firsts]] + bar_no[firsts] * seconds
        b_ends = np.minimum(b_starts + seconds, closes[session_row[firsts]])
        done = b_starts < now if partial else b_ends <= now
        keep = np.flatnonzero((b_starts >= start) & (b_starts < end) & done)
        rows = session_row[firsts][keep]
        return adjust(bars.take(keep), rows), b_starts[keep], rows


def _minutes_per_session(hist: InstrumentHistory, rows: np.ndarray, use_rth: bool) -> np.ndarray:
    if use_rth:
        return hist.segment_minutes[1, rows]
    return hist.segment_minutes[:, rows].sum(axis=0)


def _ranks(sizes: np.ndarray) -> np.ndarray:
    """0..n-1 for each group of the given sizes, concatenated."""
    total = int(sizes.sum())
    return np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _empty() -> pp.BarArrays:
    f, i = np.zeros(0), np.zeros(0, dtype=np.int64)
    return pp.BarArrays(f, f, f, f, i, f, i, f)


def _priced(
    arrays: pp.BarArrays, starts: np.ndarray, dates: np.ndarray, what: str, half_spread: float, tick: float,
    volume: bool = True,
) -> BarColumns:
    """Price the bars for whatToShow, as IB's numbers: traded and quoted prices (TRADES, BID, ASK, and
    BID_ASK's high ask and low bid) at a multiple of the tick; averages (WAP, BID_ASK's time-averaged
    open bid and close ask) as computed, kept inside their bar's range. docs/ib-numbers.md. Volume,
    WAP and count only for the trades of what has volume (an index has none: IB's -1)."""
    o, h, low, c = arrays.open, arrays.high, arrays.low, arrays.close
    shift = {"BID": -half_spread, "ASK": half_spread}.get(what, 0.0)
    if what == "BID_ASK":
        h, low = pp.round_to_tick(h + half_spread, tick), pp.round_to_tick(low - half_spread, tick)
        o, c = np.clip(arrays.mid - half_spread, low, h), np.clip(arrays.mid + half_spread, low, h)
    else:
        o, h, low, c = (pp.round_to_tick(x + shift, tick) for x in (o, h, low, c))
    if what in _WITH_VOLUME and volume:
        volume, wap, count = arrays.volume.astype(np.float64), np.clip(arrays.wap, low, h), arrays.count
    else:
        volume = wap = np.full(len(o), -1.0)
        count = np.full(len(o), -1, dtype=np.int64)
    return BarColumns(starts, dates, o, h, low, c, volume, wap, count.astype(np.int64))

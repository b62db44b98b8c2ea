"""IB's historical-data rules as data: bar sizes, their storage partitions, durations, pacing limits.

Everything the planner, pacer, scheduler and warehouse need to know about IB's limits lives here,
so a changed rule is a one-line change. Sources: docs/ib-rules.md §1–§3 (small-bar horizon §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from harvester.model import Outcome


@dataclass(frozen=True)
class BarSize:
    """One legal IB bar size and how the warehouse stores it."""

    ib_name: str  # what reqHistoricalData takes, e.g. "1 min"
    seconds: int  # nominal length; 1 day/week/month are sessions, not seconds
    label: str  # partition directory value, e.g. "1min" (no spaces in paths)
    partition: str  # file granularity inside year=YYYY/: "year", "month" or "day"

    @property
    def intraday(self) -> bool:
        return self.seconds < 86_400

    @property
    def small(self) -> bool:
        """IB's "small bars" (30 secs or less): six-month horizon, strictest pacing reading."""
        return self.seconds <= 30


_DAY = 86_400
BAR_SIZES: dict[str, BarSize] = {
    b.ib_name: b
    for b in (
        BarSize("1 secs", 1, "1secs", "day"),
        BarSize("5 secs", 5, "5secs", "day"),
        BarSize("10 secs", 10, "10secs", "day"),
        BarSize("15 secs", 15, "15secs", "day"),
        BarSize("30 secs", 30, "30secs", "day"),
        BarSize("1 min", 60, "1min", "month"),
        BarSize("2 mins", 120, "2mins", "month"),
        BarSize("3 mins", 180, "3mins", "month"),
        BarSize("5 mins", 300, "5mins", "month"),
        BarSize("10 mins", 600, "10mins", "month"),
        BarSize("15 mins", 900, "15mins", "month"),
        BarSize("20 mins", 1200, "20mins", "month"),
        BarSize("30 mins", 1800, "30mins", "month"),
        BarSize("1 hour", 3600, "1hour", "year"),
        BarSize("2 hours", 7200, "2hours", "year"),
        BarSize("3 hours", 10_800, "3hours", "year"),
        BarSize("4 hours", 14_400, "4hours", "year"),
        BarSize("8 hours", 28_800, "8hours", "year"),
        BarSize("1 day", _DAY, "1day", "year"),
        BarSize("1 week", 7 * _DAY, "1week", "year"),
        BarSize("1 month", 30 * _DAY, "1month", "year"),
    )
}
# IB's own validation message spells the last two "1W" and "1M"; accept both spellings.
_ALIASES = {"1W": "1 week", "1M": "1 month", "1 sec": None}
BY_LABEL: dict[str, BarSize] = {b.label: b for b in BAR_SIZES.values()}

WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST")
_QUOTES = ("MIDPOINT", "BID", "ASK", "BID_ASK")
# What IB serves per asset class (docs/ib-rules.md §3.1), the default first: no TRADES for forex, CFDs,
# funds, commodities or crypto (crypto's AGGTRADES is not harvested); indices have trades only, no quotes.
WHAT_TO_SHOW_BY_SEC_TYPE: dict[str, tuple[str, ...]] = {
    "STK": WHAT_TO_SHOW,
    "IND": ("TRADES",),
    "FUT": ("TRADES", *_QUOTES),
    "CONTFUT": ("TRADES", *_QUOTES),
    "BOND": ("TRADES", *_QUOTES),
    "CASH": _QUOTES,
    "CFD": _QUOTES,
    "FUND": _QUOTES,
    "CMDTY": _QUOTES,
    "CRYPTO": _QUOTES,
}


def legal_what_to_show(sec_type: str) -> tuple[str, ...]:
    """The whatToShow values IB serves for an asset class, its default first."""
    return WHAT_TO_SHOW_BY_SEC_TYPE.get(sec_type.upper(), WHAT_TO_SHOW)


def what_to_show_for(sec_type: str, asked: str | None) -> str:
    """The whatToShow to request: `asked`, or the class's default; ValueError naming the legal ones."""
    legal = legal_what_to_show(sec_type)
    if asked is None:
        return legal[0]
    if asked not in legal:
        raise ValueError(f"whatToShow {asked} is not served for {sec_type}; legal: {', '.join(legal)}")
    return asked


def bar_size(name: str) -> BarSize:
    """The BarSize for an IB spelling; ValueError naming the legal ones otherwise."""
    canonical = _ALIASES.get(name, name)
    if canonical in BAR_SIZES:
        return BAR_SIZES[canonical]
    legal = ", ".join(BAR_SIZES)
    raise ValueError(f"unknown bar size {name!r}; legal ones are: {legal}")


# --- Durations: IB Campus's rule set, one deliberate choice among three (docs/ib-rules.md §2.3–§2.4) ---

DURATION_UNITS = ("S", "D", "W", "M", "Y")
MAX_DURATION: dict[str, int] = {"S": 86_400, "D": 365, "W": 52, "M": 12, "Y": 68}
MAX_DURATION_1_SECS: dict[str, int] = {"S": 2000}  # `1 secs` takes seconds only ("invalid step: 1" for 1 D)
# Smallest and largest bar (seconds) per duration unit. Deviation from IB Campus (docs/ib-rules.md §2.4):
# `1 day` bars are allowed with `D`, as real gateways serve `1 day` × `5 D` and the planner needs it.
STEP_TABLE: dict[str, tuple[int, int]] = {
    "S": (1, 60),
    "D": (5, 3600),
    "W": (10, 4 * 3600),
    "M": (30, 8 * 3600),
    "Y": (60, _DAY),
}
_WEEK_MONTH_BARS = ("1 week", "1 month")  # only a duration in years takes these

# Bars of 30 s or less exist only for the last six months; 180 days sits safely inside IB's horizon.
SMALL_BAR_HORIZON_DAYS = 180
# A daily backfill with no head timestamp asks this far back in ONE request: IB starts it at the listing.
DAILY_HORIZON_YEARS = 40


@dataclass(frozen=True)
class Duration:
    """An IB durationStr, e.g. `30 D`."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


def parse_duration(text: str) -> Duration:
    """`"30 D"` → Duration(30, "D"); ValueError naming the text otherwise."""
    parts = text.split(" ")
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit() or parts[1] not in DURATION_UNITS:
        raise ValueError(f"bad duration {text!r}: expected '<N> <S|D|W|M|Y>'")
    count = int(parts[0])
    if count <= 0:
        raise ValueError(f"bad duration {text!r}: the count must be positive")
    return Duration(count, parts[1])


def max_duration(bar_name: str, unit: str) -> int:
    """Largest count IB accepts for `unit` with this bar size (0 = the unit is not allowed)."""
    bar = bar_size(bar_name)
    if bar.seconds == 1:
        return MAX_DURATION_1_SECS.get(unit, 0)
    if bar.ib_name in _WEEK_MONTH_BARS:
        return MAX_DURATION["Y"] if unit == "Y" else 0
    if bar.ib_name == "1 day" and unit == "D":
        return MAX_DURATION["D"]
    low, high = STEP_TABLE[unit]
    return MAX_DURATION[unit] if low <= bar.seconds <= high else 0


def check_duration(bar_name: str, duration: str) -> None:
    """Raise ValueError if IB would refuse this duration for this bar size (invalid step / 321)."""
    parsed = parse_duration(duration)
    if parsed.unit == "D" and parsed.count > MAX_DURATION["D"]:
        raise ValueError(f"duration {duration!r}: more than 365 days must be written in years")
    limit = max_duration(bar_name, parsed.unit)
    if limit == 0:
        raise ValueError(f"duration unit {parsed.unit!r} is not allowed for {bar_name!r} bars")
    if parsed.count > limit:
        raise ValueError(
            f"duration {duration!r} is too long for {bar_name!r} bars (max {limit} {parsed.unit})"
        )


# --- Pacing (docs/ib-rules.md §1.1–§1.5): the hard rules, applied to every bar size and to head timestamps ---


@dataclass(frozen=True)
class PacingLimits:
    """IB's historical pacing rules; `scaled(f)` compresses every time span for demos and tests."""

    window_s: float = 600.0  # sliding window for the weighted count
    max_weighted: int = 60  # weighted requests per window (BID_ASK weighs 2)
    identical_s: float = 15.0  # no identical request within this span
    same_contract_s: float = 2.0  # burst span per (contract, exchange, whatToShow)
    same_contract_max: int = 5  # at most this many in that span (the 6th is a violation)
    max_open: int = 50  # open historical requests, head timestamps included until cancelled
    safety_s: float = 1.0  # margin added to every span: send-vs-receive jitter must never violate

    def scaled(self, factor: float) -> PacingLimits:
        """Every time span multiplied by `factor` (0.01 → a 6 s window); counts unchanged."""
        if factor <= 0:
            raise ValueError(f"pacing scale must be positive, got {factor}")
        return PacingLimits(
            window_s=self.window_s * factor,
            max_weighted=self.max_weighted,
            identical_s=self.identical_s * factor,
            same_contract_s=self.same_contract_s * factor,
            same_contract_max=self.same_contract_max,
            max_open=self.max_open,
            safety_s=self.safety_s * factor,
        )


def request_weight(what_to_show: str) -> int:
    """Pacing weight: BID_ASK counts double because IB runs a BID and an ASK query for it."""
    return 2 if what_to_show.upper() == "BID_ASK" else 1


# --- Error classification (docs/ib-rules.md §1.7, §6.1–§6.3) ---

_WARNINGS = frozenset({165, 2174, 10167})
_PERMISSION_CODES = frozenset({354, 10089, 10090, 10168, 10186, 10187})
_DISCONNECT_CODES = frozenset({1100, 1300, 504, 502})


def classify_error(code: int, text: str) -> Outcome | None:
    """What an IB error on a historical request means; None for warnings that do not end it.

    Code 162 is HMDS's catch-all, so it is told apart by its text.
    """
    lowered = text.lower()
    if code in _WARNINGS or 2100 <= code <= 2199:
        return None
    if "hmds query returned no data" in lowered:
        return Outcome.EMPTY
    if "pacing violation" in lowered or code == 322:
        return Outcome.PACING
    if "no market data permissions" in lowered or code in _PERMISSION_CODES:
        return Outcome.NO_PERMISSION
    if "query cancelled" in lowered or code == 366:
        return Outcome.CANCELLED
    if "invalid step" in lowered or code in (321, 10314):
        return Outcome.INVALID
    if code == 200:
        return Outcome.UNKNOWN_CONTRACT
    if code in _DISCONNECT_CODES or "connection" in lowered or "not connected" in lowered:
        return Outcome.DISCONNECTED
    return Outcome.ERROR

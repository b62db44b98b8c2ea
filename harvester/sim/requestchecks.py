"""Parse and validate reqHistoricalData / reqHeadTimeStamp parameters, with IB's error codes and texts.

Rule set (one documented choice among IB's three disagreeing tables, docs/ib-rules.md §2.3-§2.4):
  * max duration per bar size: `1 secs` ≤ 2000 S and no D/W/M/Y; every other bar size ≤ 86400 S,
    365 D, 52 W, 12 M, 68 Y;
  * step table, lower bound only: the smallest bar size per duration unit is S 1 s, D 5 s, W 10 s,
    M 30 s, Y 1 min. The table's upper bound is not enforced: real gateways serve `1 day` × `5 D`.
A duration over 365 D is IB's 321 "must be made in years"; every other step failure is 162
"invalid step" (as reported for `1 secs` × `1 D`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harvester.sim.market.barsizes import BarSize, UnknownBarSize
from harvester.sim.market.barsizes import parse_bar_size as lookup_bar_size
from harvester.sim.wire import messages as m

GATEWAY_ZONE = "US/Eastern"  # the login zone a zone-less endDateTime is read in

WHAT_TO_SHOW = frozenset({"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"})

MAX_DURATION = {"S": 86400, "D": 365, "W": 52, "M": 12, "Y": 68}
MAX_DURATION_1_SECS = {"S": 2000}
MIN_BAR_SECONDS_PER_UNIT = {"S": 1, "D": 5, "W": 10, "M": 30, "Y": 60}

SMALL_BAR_HORIZON = timedelta(days=183)  # bars of 30 s or less: nothing older than six months

LEGAL_BAR_SIZES = (
    "1 secs, 5 secs, 10 secs, 15 secs, 30 secs, 1 min, 2 mins, 3 mins, 5 mins, 10 mins, 15 mins, "
    "20 mins, 30 mins, 1 hour, 2 hours, 3 hours, 4 hours, 8 hours, 1 day, 1W, 1M"
)


class RequestRejected(Exception):
    """A request IB would refuse; carries the error code and text sent on its reqId."""

    def __init__(self, code: int, text: str, outcome: str = "error") -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.outcome = outcome


@dataclass(frozen=True)
class Duration:
    count: int
    unit: str  # S, D, W, M, Y

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


@dataclass(frozen=True)
class EndTime:
    """Parsed endDateTime: None means "now"; `implied_zone` means warning 2174 is due."""

    instant: datetime | None
    implied_zone: bool = False


def _invalid(cause: str) -> RequestRejected:
    return RequestRejected(321, f"Error validating request.-'bS' : cause - {cause}", "invalid")


def parse_bar_size(text: str) -> BarSize:
    """The bar size as IB spells it (`1W` and `1 week` both pass), or 321 with IB's legal list."""
    try:
        return lookup_bar_size(text)
    except UnknownBarSize:
        raise RequestRejected(
            321,
            "Error validating request.-'bK' : cause - Historical data bar size setting is invalid. "
            f"Legal ones are: {LEGAL_BAR_SIZES}",
            "invalid",
        ) from None


def parse_duration(text: str) -> Duration:
    match = re.fullmatch(r"(\d+) ([SDWMY])", text.strip())
    if not match or int(match.group(1)) <= 0:
        raise _invalid(f"Historical data request duration format is invalid: {text!r}")
    return Duration(int(match.group(1)), match.group(2))


def check_step(bar_size: BarSize, duration: Duration) -> None:
    """Enforce the max-duration and step rules (module docstring, docs/ib-rules.md §2.4)."""
    if duration.unit == "D" and duration.count > MAX_DURATION["D"]:
        raise _invalid("Historical data requests for durations longer than 365 days must be made in years.")
    seconds = bar_size.seconds
    limits = MAX_DURATION_1_SECS if seconds == 1 else MAX_DURATION
    too_long = duration.unit not in limits or duration.count > limits[duration.unit]
    too_fine = seconds < MIN_BAR_SECONDS_PER_UNIT[duration.unit]
    if too_long or too_fine:
        raise RequestRejected(
            162,
            f"{m.HMDS}invalid step: duration {duration} is not allowed for {bar_size.name} bars",
            "invalid",
        )


def parse_what_to_show(text: str) -> str:
    what = text.strip().upper()
    if what not in WHAT_TO_SHOW:
        raise RequestRejected(
            321, f"Error validating request.-'bQ' : cause - Invalid whatToShow: {text!r}", "invalid"
        )
    return what


def check_format_date(format_date: int) -> None:
    if format_date not in (1, 2):
        raise RequestRejected(
            321,
            f"Error validating request.-'bP' : cause - Date formatting selection of {format_date} rejected.",
            "invalid",
        )


def parse_end(text: str) -> EndTime:
    """endDateTime forms: "" (now), `yyyymmdd hh:mm:ss ZONE`, `yyyymmdd-hh:mm:ss` (UTC), and the
    deprecated zone-less `yyyymmdd hh:mm:ss` (read in the gateway zone, warning 2174). Else 10314."""
    text = text.strip()
    if not text:
        return EndTime(None)
    try:
        if re.fullmatch(r"\d{8}-\d{2}:\d{2}:\d{2}", text):
            return EndTime(datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC))
        parts = text.split()
        if (
            len(parts) in (2, 3)
            and re.fullmatch(r"\d{8}", parts[0])
            and re.fullmatch(r"\d{2}:\d{2}:\d{2}", parts[1])
        ):
            local = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S")
            zone_name = parts[2] if len(parts) == 3 else GATEWAY_ZONE
            zone = UTC if zone_name in ("UTC", "GMT") else ZoneInfo(zone_name)
            return EndTime(local.replace(tzinfo=zone).astimezone(UTC), implied_zone=len(parts) == 2)
    except (ValueError, ZoneInfoNotFoundError):
        pass
    raise RequestRejected(10314, m.TEXT_BAD_END, "invalid")


def subtract_months(when: datetime, months: int) -> datetime:
    """`when` moved back by calendar months, clamping the day (Mar 31 − 1 M → Feb 28/29)."""
    total = when.year * 12 + (when.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    for day in range(when.day, 27, -1):
        try:
            return when.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return when.replace(year=year, month=month, day=min(when.day, 28))

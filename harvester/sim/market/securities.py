"""The simulator's securities master: which contracts exist, their conIds, exchanges and listing dates.

IB identifies a contract by conId; a symbol alone can be ambiguous (listed on two primary exchanges),
in which case IB returns every candidate for contract details and error 200 for data requests. A symbol
is an attribute with a history: corporate actions (market/actions.py) rename a conId from an ex-date on,
or move a listing to a new conId, so the server matches symbols as of its "now".
"""

from __future__ import annotations

import csv
import datetime
import zlib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

BUNDLED_MASTER = Path(__file__).parent / "data" / "securities.csv"

COLUMNS = (
    "symbol",
    "sec_type",
    "primary_exchange",
    "currency",
    "con_id",
    "listing_date",
    "long_name",
    "stock_type",
    "isin",
)  # and optionally min_tick (default 0.01, what IB gives US stocks)

_CON_ID_BASE = 1_000_000
_CON_ID_SPAN = 899_000_000

# Where each primary exchange trades: exchange_calendars name and IB's time zone id.
_VENUES: dict[str, tuple[str, str]] = {
    name: ("XNYS", "US/Eastern") for name in ("NYSE", "NASDAQ", "AMEX", "ARCA", "BATS", "ISLAND")
}


@dataclass(frozen=True)
class Instrument:
    """One listing as the simulated gateway knows it."""

    con_id: int
    symbol: str
    sec_type: str
    primary_exchange: str
    currency: str
    long_name: str
    stock_type: str
    isin: str
    calendar_name: str  # exchange_calendars name, "XNYS"
    time_zone: str  # IB/ZoneInfo name, "US/Eastern"
    listing_date: datetime.date
    min_tick: float = 0.01  # contract details' minTick: traded prices are multiples of it
    names: tuple[tuple[datetime.date, str], ...] = ()  # (from ex-date, symbol); empty: always `symbol`
    listed_from: datetime.date | None = None  # a line a corporate action created: unknown before this
    delisted: datetime.date | None = None  # no sessions from this day on (its listing moved to a new conId)

    def local_date(self, now: datetime.datetime) -> datetime.date:
        """The exchange's date at `now`: actions take effect from their ex-date's start, local time."""
        return now.astimezone(ZoneInfo(self.time_zone)).date()

    def symbol_on(self, now: datetime.datetime | None) -> str:
        """The symbol IB shows for this conId at `now` (None: the master's own)."""
        if now is None or not self.names:
            return self.symbol
        day = self.local_date(now)
        current = self.names[0][1]
        for since, name in self.names:
            if since <= day:
                current = name
        return current

    def exists_on(self, now: datetime.datetime | None) -> bool:
        return now is None or self.listed_from is None or self.local_date(now) >= self.listed_from


def derive_con_id(symbol: str, primary_exchange: str, sec_type: str, currency: str, salt: int = 0) -> int:
    """A stable conId from the listing's identity (crc32: same on every machine and Python run)."""
    key = f"{symbol}|{primary_exchange}|{sec_type}|{currency}" + (f"|{salt}" if salt else "")
    return _CON_ID_BASE + zlib.crc32(key.encode()) % _CON_ID_SPAN


def assign_con_ids(rows: list[dict[str, str]]) -> list[int]:
    """conIds for rows (explicit ones kept, blank ones derived), salted until unique."""
    explicit = [int(r["con_id"]) for r in rows if r.get("con_id", "").strip()]
    taken = set(explicit)
    if len(taken) != len(explicit):
        raise ValueError("duplicate explicit con_id in securities master")
    out = []
    for r in rows:
        if r.get("con_id", "").strip():
            out.append(int(r["con_id"]))
            continue
        salt = 0
        while (
            cid := derive_con_id(r["symbol"], r["primary_exchange"], r["sec_type"], r["currency"], salt)
        ) in taken:
            salt += 1
        taken.add(cid)
        out.append(cid)
    return out


class SecuritiesMaster:
    """All known instruments, searchable the way reqContractDetails searches."""

    def __init__(self, instruments: list[Instrument]) -> None:
        self._instruments = list(instruments)
        self._by_con_id = {i.con_id: i for i in self._instruments}
        if len(self._by_con_id) != len(self._instruments):
            raise ValueError("duplicate con_id in securities master")
        self._by_symbol: dict[str, list[Instrument]] = {}  # by every symbol an instrument ever had
        for inst in self._instruments:
            for name in dict.fromkeys([inst.symbol, *(n for _, n in inst.names)]):
                self._by_symbol.setdefault(name.upper(), []).append(inst)

    @classmethod
    def load(cls, path: str | Path | None = None) -> SecuritiesMaster:
        """Read a master CSV (None → the bundled one); a bad row raises ValueError naming file:line."""
        path = Path(path) if path is not None else BUNDLED_MASTER
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                lines = [(n, line) for n, line in enumerate(fh, start=1) if not line.startswith("#")]
        except OSError as exc:
            raise ValueError(f"{path}: cannot read securities master ({exc.strerror})") from None
        reader = csv.DictReader(line for _, line in lines)
        missing = [c for c in COLUMNS if c != "con_id" and c not in (reader.fieldnames or [])]
        if missing:
            header_line = lines[0][0] if lines else 1
            raise ValueError(f"{path}:{header_line}: missing column(s) {', '.join(missing)}")
        rows = []
        for (line_no, _), row in zip(lines[1:], reader):
            rows.append((line_no, _clean_row(path, line_no, row)))
        try:
            con_ids = assign_con_ids([r for _, r in rows])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return cls([_instrument(r, cid) for (_, r), cid in zip(rows, con_ids)])

    def match(
        self,
        *,
        con_id: int = 0,
        symbol: str = "",
        sec_type: str = "",
        exchange: str = "",
        primary_exchange: str = "",
        currency: str = "",
        isin: str = "",
        now: datetime.datetime | None = None,
    ) -> list[Instrument]:
        """Instruments fitting the description at `now` (symbols as of then; None: the master's own
        symbols); several means ambiguous, none means unknown (error 200)."""
        if con_id:
            inst = self._by_con_id.get(con_id)
            return [inst] if inst and inst.exists_on(now) else []
        if symbol:
            candidates = [i for i in self._by_symbol.get(symbol.upper(), [])
                          if i.symbol_on(now).upper() == symbol.upper()]
        elif isin:
            candidates = [i for i in self._instruments if i.isin == isin]
        else:
            return []
        return [
            i
            for i in candidates
            if i.exists_on(now)
            and (not sec_type or i.sec_type == sec_type.upper())
            and (not currency or i.currency == currency.upper())
            and (not primary_exchange or i.primary_exchange == primary_exchange.upper())
            and (not isin or i.isin == isin)
            and _routes_to(exchange.upper(), i)
        ]

    def by_con_id(self, con_id: int) -> Instrument | None:
        return self._by_con_id.get(con_id)

    def __len__(self) -> int:
        return len(self._instruments)

    def __iter__(self):
        return iter(self._instruments)


def _routes_to(exchange: str, inst: Instrument) -> bool:
    """SMART (or nothing) reaches every listing; a direct exchange only its own (ISLAND is NASDAQ)."""
    if exchange in ("", "SMART"):
        return True
    return exchange == inst.primary_exchange or (exchange == "ISLAND" and inst.primary_exchange == "NASDAQ")


def _clean_row(path: Path, line_no: int, row: dict[str, str | None]) -> dict[str, str]:
    if None in row or any(v is None for v in row.values()):
        raise ValueError(f"{path}:{line_no}: wrong number of fields")
    clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for column in ("symbol", "sec_type", "primary_exchange", "currency", "listing_date"):
        if not clean.get(column):
            raise ValueError(f"{path}:{line_no}: empty {column}")
    if clean["primary_exchange"].upper() not in _VENUES:
        raise ValueError(f"{path}:{line_no}: unknown primary_exchange {clean['primary_exchange']!r}")
    if clean.get("min_tick") and not _positive_number(clean["min_tick"]):
        raise ValueError(f"{path}:{line_no}: min_tick {clean['min_tick']!r} is not a positive number")
    if clean.get("con_id") and not clean["con_id"].isdigit():
        raise ValueError(f"{path}:{line_no}: con_id {clean['con_id']!r} is not a positive integer")
    try:
        datetime.datetime.strptime(clean["listing_date"], "%Y-%m-%d")
    except ValueError:
        raise ValueError(
            f"{path}:{line_no}: listing_date {clean['listing_date']!r} is not YYYY-MM-DD"
        ) from None
    return clean


def _positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < float("inf")
    except ValueError:
        return False


def _instrument(row: dict[str, str], con_id: int) -> Instrument:
    primary = row["primary_exchange"].upper()
    calendar_name, time_zone = _VENUES[primary]
    return Instrument(
        con_id=con_id,
        symbol=row["symbol"].upper(),
        sec_type=row["sec_type"].upper(),
        primary_exchange=primary,
        currency=row["currency"].upper(),
        long_name=row.get("long_name", ""),
        stock_type=row.get("stock_type", "") or "COMMON",
        isin=row.get("isin", ""),
        calendar_name=calendar_name,
        time_zone=time_zone,
        listing_date=datetime.date.fromisoformat(row["listing_date"]),
        min_tick=float(row.get("min_tick") or 0.01),
    )

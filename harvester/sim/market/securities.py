"""The simulator's securities master: which contracts exist, their conIds, exchanges and listing dates.

IB identifies a contract by conId; a symbol alone can be ambiguous (listed on two primary exchanges),
in which case IB returns every candidate for contract details and error 200 for data requests. A symbol
is an attribute with a history: corporate actions (market/actions.py) rename a conId from an ex-date on,
or move a listing to a new conId, so the server matches symbols as of its "now".
Two bundled files: the S&P 500 with ETFs (`securities.csv`, rebuilt by scripts/build_reference_data.py)
and a hand-kept few of every other asset class (`world.csv`): stocks abroad, forex, indices, and futures
chains, each row of which (an `expiries` rule) stands for every expiry from its listing to 2030.
"""

from __future__ import annotations

import csv
import datetime
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo

from harvester.sim.market.calendar import VENUES, SessionCalendar, Venue

BUNDLED_MASTER = Path(__file__).parent / "data" / "securities.csv"
BUNDLED_WORLD = Path(__file__).parent / "data" / "world.csv"

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

OPTIONAL = ("local_symbol", "multiplier", "min_tick", "expiries", "price")  # world.csv's extra columns

_CON_ID_BASE = 1_000_000
_CON_ID_SPAN = 899_000_000
_MONTH_CODES = "FGHJKMNQUVXZ"  # IB's (and CME's) futures month letters, January first
_CHAIN_END = 2030  # the calendars' last year
# A futures chain's expiry months, and how long before its expiry each contract is listed.
_EXPIRIES = {"quarterly": ((3, 6, 9, 12), 15), "monthly": (tuple(range(1, 13)), 12)}


@dataclass(frozen=True)
class Instrument:
    """One listing as the simulated gateway knows it. `primary_exchange` is a stock's listing exchange
    (blank for other classes, as IB sends it); `exchange` is where it is listed whatever its class."""

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
    exchange: str = ""
    local_symbol: str = ""
    multiplier: str = ""
    min_tick: float = 0.01  # contract details' minTick: traded prices are multiples of it
    last_trade_date: datetime.date | None = None  # futures: no bars after this session
    price: float | None = None  # price level of the generated path (None: drawn from the conId)
    names: tuple[tuple[datetime.date, str], ...] = ()  # (from ex-date, symbol); empty: always `symbol`
    listed_from: datetime.date | None = None  # a line a corporate action created: unknown before this
    delisted: datetime.date | None = None  # no sessions from this day on (its listing moved to a new conId)

    @property
    def venue(self) -> Venue:
        return VENUES[self.exchange or self.primary_exchange]

    @property
    def label(self) -> str:
        return self.local_symbol or self.symbol

    @property
    def path_id(self) -> int:
        """What the generated price path is keyed by: the conId, or a futures chain's root."""
        if self.sec_type != "FUT":
            return self.con_id
        return derive_con_id(self.symbol, self.exchange, "FUT", self.currency)

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
        """Read a master CSV (None → the bundled two); a bad row raises ValueError naming file:line."""
        if path is None:
            return cls([*cls.load(BUNDLED_MASTER), *cls.load(BUNDLED_WORLD)])
        path = Path(path)
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
        instruments = []
        for (_, row), cid in zip(rows, con_ids):
            inst = _instrument(row, cid)
            instruments.extend(_chain(inst, row["expiries"]) if row.get("expiries") else [inst])
        return cls(instruments)

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
        last_trade_date: str = "",
        multiplier: str = "",
        local_symbol: str = "",
        include_expired: bool = False,
        today: datetime.date | None = None,
        now: datetime.datetime | None = None,
    ) -> list[Instrument]:
        """Instruments fitting the description at `now` (symbols as of then; None: the master's own);
        several means ambiguous, none means unknown (error 200).

        Futures expired by `today` exist only with `include_expired`, and only for two years (IB serves
        no history beyond); CONTFUT means the chain's front month (its own description comes back)."""
        if con_id:
            inst = self._by_con_id.get(con_id)
            listed = inst and inst.exists_on(now) and self._listed(inst, include_expired or inst.sec_type != "FUT",
                                                                    today)
            return [inst] if listed else []
        sec_type = sec_type.upper()
        if symbol:
            candidates = [i for i in self._by_symbol.get(symbol.upper(), [])
                          if i.symbol_on(now).upper() == symbol.upper()]
        elif local_symbol:
            candidates = [i for i in self._instruments if i.local_symbol == local_symbol.upper()]
        elif isin:
            candidates = [i for i in self._instruments if i.isin == isin]
        else:
            return []
        found = [
            i
            for i in candidates
            if i.exists_on(now)
            and (not sec_type or i.sec_type == sec_type or (sec_type == "CONTFUT" and i.sec_type == "FUT"))
            and (not currency or i.currency == currency.upper())
            and (not primary_exchange or i.primary_exchange == primary_exchange.upper())
            and (not isin or i.isin == isin)
            and (not last_trade_date or (i.last_trade_date and f"{i.last_trade_date:%Y%m%d}".startswith(last_trade_date)))
            and (not multiplier or i.multiplier == multiplier)
            and (not local_symbol or i.local_symbol == local_symbol.upper())
            and _routes_to(exchange.upper(), i)
            and self._listed(i, include_expired and sec_type != "CONTFUT", today)
        ]
        if sec_type == "CONTFUT":
            return [replace(min(found, key=lambda i: i.last_trade_date), sec_type="CONTFUT")] if found else []
        return found

    @staticmethod
    def _listed(inst: Instrument, include_expired: bool, today: datetime.date | None) -> bool:
        """Listed by `today`, and not expired (or expired within two years, when asked to include those)."""
        if today is None or inst.last_trade_date is None:
            return True
        if inst.listing_date > today:
            return False
        expired = inst.last_trade_date < today
        return not expired or (include_expired and (today - inst.last_trade_date).days <= 730)

    def by_con_id(self, con_id: int) -> Instrument | None:
        return self._by_con_id.get(con_id)

    def __len__(self) -> int:
        return len(self._instruments)

    def __iter__(self):
        return iter(self._instruments)


def _routes_to(exchange: str, inst: Instrument) -> bool:
    """SMART (or nothing) reaches every stock; a direct exchange only its own (ISLAND is NASDAQ). Other
    classes trade where they are listed (futures, indices) or on IDEALPRO (forex): never SMART."""
    if exchange == "":
        return True
    if exchange == "SMART":
        return inst.sec_type == "STK"
    return exchange == inst.exchange or (exchange == "ISLAND" and inst.exchange == "NASDAQ")


def _clean_row(path: Path, line_no: int, row: dict[str, str | None]) -> dict[str, str]:
    if None in row or any(v is None for v in row.values()):
        raise ValueError(f"{path}:{line_no}: wrong number of fields")
    clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for column in ("symbol", "sec_type", "primary_exchange", "currency", "listing_date"):
        if not clean.get(column):
            raise ValueError(f"{path}:{line_no}: empty {column}")
    if clean["primary_exchange"].upper() not in VENUES:
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
    if clean.get("expiries") and (clean["expiries"] not in _EXPIRIES or clean["sec_type"].upper() != "FUT"):
        raise ValueError(f"{path}:{line_no}: expiries {clean['expiries']!r}: one of {', '.join(_EXPIRIES)}, "
                         "for FUT rows")
    if clean.get("price") and not _positive_number(clean["price"]):
        raise ValueError(f"{path}:{line_no}: price {clean['price']!r} is not a positive number")
    return clean


def _positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < float("inf")
    except ValueError:
        return False


def _instrument(row: dict[str, str], con_id: int) -> Instrument:
    venue_code = row["primary_exchange"].upper()
    venue = VENUES[venue_code]
    sec_type = row["sec_type"].upper()
    symbol = row["symbol"].upper()
    return Instrument(
        con_id=con_id,
        symbol=symbol,
        sec_type=sec_type,
        primary_exchange=venue_code if sec_type == "STK" else "",
        currency=row["currency"].upper(),
        long_name=row.get("long_name", ""),
        stock_type=row.get("stock_type", "") or ("COMMON" if sec_type == "STK" else ""),
        isin=row.get("isin", ""),
        calendar_name=venue.calendar,
        time_zone=venue.zone,
        listing_date=datetime.date.fromisoformat(row["listing_date"]),
        exchange=venue_code,
        local_symbol=(row.get("local_symbol") or symbol).upper(),
        multiplier=row.get("multiplier", ""),
        min_tick=float(row.get("min_tick") or 0.01),
        price=float(row["price"]) if row.get("price") else None,
    )


def _chain(root: Instrument, rule: str) -> list[Instrument]:
    """Every expiry of a futures chain from its listing year to 2030, each its own contract and conId.

    Last trade dates follow the exchange's rule: quarterly index futures on the third Friday of the
    month (the session before, if a holiday), monthly crude three sessions before the 25th of the
    month before (four if the 25th is no session)."""
    months, listed_months = _EXPIRIES[rule]
    sessions = SessionCalendar.for_instrument(root)
    out = []
    for year in range(root.listing_date.year, _CHAIN_END + 1):
        for month in months:
            last = _last_trade_date(sessions, rule, year, month)
            if last is None or last <= root.listing_date:
                continue
            listed = _months_before(last, listed_months)
            code = f"{root.symbol}{_MONTH_CODES[month - 1]}{year % 10}"
            cid = derive_con_id(root.symbol, root.exchange, f"FUT{year}{month:02d}", root.currency)
            out.append(replace(root, con_id=cid, local_symbol=code, last_trade_date=last,
                               listing_date=max(listed, root.listing_date)))
    return out


def _last_trade_date(sessions: SessionCalendar, rule: str, year: int, month: int) -> datetime.date | None:
    if rule == "quarterly":
        first = datetime.date(year, month, 1)
        third_friday = first + datetime.timedelta(days=(4 - first.weekday()) % 7 + 14)
        k = sessions.last_ordinal_on_or_before(third_friday)
    else:
        prior_year, prior_month = (year, month - 1) if month > 1 else (year - 1, 12)
        the_25th = datetime.date(prior_year, prior_month, 25)
        before = sessions.first_ordinal_on_or_after(the_25th)
        is_session = before < len(sessions.dates) and sessions.dates[before] == the_25th
        k = before - (3 if is_session else 4)
    return sessions.dates[k] if 0 <= k < len(sessions.dates) else None


def _months_before(day: datetime.date, months: int) -> datetime.date:
    total = day.year * 12 + day.month - 1 - months
    return datetime.date(total // 12, total % 12 + 1, min(day.day, 28))

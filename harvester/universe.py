"""Read and validate a universe CSV into contract specs.

The universe file is user input that ends up in IB requests, file names and SQL, so every symbol is
checked against a strict alphabet and every problem is reported as one line naming file and line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from harvester.model import ContractSpec

MAX_ROWS = 20_000
MAX_SYMBOL_LEN = 12
MAX_BYTES = 16 * 1024 * 1024
# IB secTypes with historical bars (ETFs are STK at IB). CONTFUT is harvested as the expiries it stands for.
SEC_TYPES = frozenset({"STK", "IND", "FUT", "CONTFUT", "CASH", "CFD", "BOND", "FUND", "CMDTY", "CRYPTO"})
# Where IB has no SMART routing for the class, the universe must name the exchange.
_EXCHANGE_NEEDED = frozenset({"IND", "FUT", "CONTFUT"})
_DEFAULT_EXCHANGE = {"CASH": "IDEALPRO"}
_FUTURES = frozenset({"FUT", "CONTFUT"})
# Starts alphanumeric and has no ".." so a symbol can never climb out of a path.
_SYMBOL_OK = re.compile(r"(?!.*\.\.)[A-Z0-9][A-Z0-9 .\-/&]*")
_NAME_OK = re.compile(r"[A-Z0-9.]*")
_DIGITS = re.compile(r"[0-9]{1,12}")
_EXPIRY = re.compile(r"(19|20)[0-9]{2}(0[1-9]|1[0-2])([0-2][0-9]|3[01])?")  # YYYYMM or YYYYMMDD
_MULTIPLIER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_PAIR = re.compile(r"([A-Z]{3})\.([A-Z]{3})")  # a forex pair written EUR.USD
_SYMBOL_ALIASES = ("symbol", "ticker")
_OPTIONAL = ("sec_type", "exchange", "primary_exchange", "currency", "con_id", "last_trade_date", "multiplier")
_COLUMN_ALIASES = {"expiry": "last_trade_date", "last_trade_date_or_contract_month": "last_trade_date",
                   "contract_month": "last_trade_date"}


class UniverseError(ValueError):
    """A universe file that cannot be used; the message is one line: ``<file>:<line>: <reason>``
    (``<file>: <reason>`` when the whole file is at fault, line 0)."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def _shown(value: object, limit: int = 40) -> str:
    """A cell as an error message quotes it: a 5,000-character symbol is cut, saying how long it was."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


def ib_symbol(raw: str) -> str:
    """Vendor ticker → IB symbol: IB spells share classes with a space (``BRK.B``/``BF/B`` → ``BRK B``)."""
    symbol = raw.strip().upper()
    return re.sub(r"(?<=[A-Z0-9])[./](?=[A-Z]{1,2}$)", " ", symbol)


def load_universe(path: Path | str) -> list[ContractSpec]:
    """Parse a universe CSV; raise UniverseError on anything that should not reach IB."""
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    header_no, header = _find_header(path, lines)
    columns = _column_map(path, header_no, header)
    specs: dict[tuple[str, str, str, int], ContractSpec] = {}
    for rows, (line_no, row) in enumerate(_data_rows(path, lines, header_no, len(header)), start=1):
        if rows > MAX_ROWS:
            raise UniverseError(path, line_no, f"more than {MAX_ROWS} rows; split the universe")
        spec = _spec_from_row(path, line_no, row, columns)
        # ES the stock and ES the future are two instruments; so is one symbol on two listings
        key = (spec.sec_type, spec.label, spec.primary_exchange, spec.con_id)
        previous = specs.get(key)
        if previous is None:
            specs[key] = spec
        elif previous.identity() != spec.identity():
            raise UniverseError(path, line_no, f"symbol {_shown(spec.label)} conflicts with line {previous.line}")
    if not specs:
        raise UniverseError(path, header_no, "no rows: the universe is empty")
    return list(specs.values())


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:  # read at most one byte past the cap: st_size is 0 for /dev/zero and pipes
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise UniverseError(path, 0, f"file larger than {MAX_BYTES // 2**20} MiB; not a universe list")
    except FileNotFoundError:
        raise UniverseError(path, 0, "file not found") from None
    except OSError as exc:
        raise UniverseError(path, 0, f"cannot read: {exc.strerror}") from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise UniverseError(path, line, "binary content (NUL byte); expected a UTF-8 CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UniverseError(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x})") from None


def _is_skippable(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#") or not stripped.strip(",").strip()


def _parse_line(path: Path, line_no: int, line: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(line), strict=True))
    except csv.Error as exc:
        raise UniverseError(path, line_no, f"unparseable CSV: {exc}") from None
    if len(rows) != 1:
        raise UniverseError(path, line_no, "unparseable CSV row")
    return [field.strip() for field in rows[0]]


def _find_header(path: Path, lines: list[str]) -> tuple[int, list[str]]:
    for index, line in enumerate(lines):
        if not _is_skippable(line):
            names = [name.lower().replace(" ", "_") for name in _parse_line(path, index + 1, line)]
            return index + 1, [_COLUMN_ALIASES.get(name, name) for name in names]
    raise UniverseError(path, 1, "empty file: no header and no rows")


def _column_map(path: Path, header_no: int, header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for alias in _SYMBOL_ALIASES:
        if alias in header:
            columns["symbol"] = header.index(alias)
            break
    else:
        raise UniverseError(path, header_no, "no 'symbol' column (also accepted: 'ticker')")
    for name in _OPTIONAL:
        if name in header:
            columns[name] = header.index(name)
    return columns


def _data_rows(path: Path, lines: list[str], header_no: int, width: int):
    for index in range(header_no, len(lines)):
        line_no = index + 1
        if _is_skippable(lines[index]):
            continue
        row = _parse_line(path, line_no, lines[index])
        if len(row) != width:
            raise UniverseError(path, line_no, f"expected {width} fields, found {len(row)}")
        yield line_no, row


def _spec_from_row(path: Path, line_no: int, row: list[str], columns: dict[str, int]) -> ContractSpec:
    def field(name: str, default: str) -> str:
        return row[columns[name]].strip() if name in columns and row[columns[name]].strip() else default

    raw = field("symbol", "")
    if not raw:
        raise UniverseError(path, line_no, "empty symbol")
    sec_type = field("sec_type", "STK").upper()
    if sec_type not in SEC_TYPES:
        raise UniverseError(
            path, line_no, f"unknown sec_type {_shown(sec_type)} (one of {', '.join(sorted(SEC_TYPES))})"
        )
    pair = _PAIR.fullmatch(raw.strip().upper()) if sec_type == "CASH" else None
    symbol = pair.group(1) if pair else ib_symbol(raw)
    if not raw.isascii() or len(symbol) > MAX_SYMBOL_LEN or not _SYMBOL_OK.fullmatch(symbol):
        raise UniverseError(path, line_no, f"invalid symbol {_shown(raw)} (allowed: A-Z 0-9 space . - / &, ≤12)")
    if sec_type in _EXCHANGE_NEEDED and not field("exchange", ""):
        raise UniverseError(path, line_no, f"{sec_type} {_shown(raw)} needs an exchange (IB does not route it SMART), "
                                           "e.g. CME, EUREX, CBOE")
    names = {
        name: field(name, default).upper()
        for name, default in (("exchange", _DEFAULT_EXCHANGE.get(sec_type, "SMART")), ("primary_exchange", ""),
                              ("currency", pair.group(2) if pair else "USD"))
    }
    for name, value in names.items():
        if len(value) > 16 or not _NAME_OK.fullmatch(value):
            raise UniverseError(path, line_no, f"invalid {name} {_shown(value)}")
    if pair and names["currency"] != pair.group(2):
        raise UniverseError(path, line_no, f"pair {_shown(raw)} is quoted in {pair.group(2)}, not {names['currency']}")
    expiry, multiplier = field("last_trade_date", ""), field("multiplier", "")
    if sec_type == "FUT" and not _EXPIRY.fullmatch(expiry):
        raise UniverseError(path, line_no, f"FUT {_shown(raw)} needs last_trade_date as YYYYMM or YYYYMMDD, "
                                           f"got {_shown(expiry)} (for a rolling series use sec_type CONTFUT)")
    if expiry and sec_type != "FUT":
        raise UniverseError(path, line_no, f"last_trade_date {_shown(expiry)} only applies to FUT, not {sec_type}")
    if multiplier and (sec_type not in _FUTURES or not _MULTIPLIER.fullmatch(multiplier)):
        raise UniverseError(path, line_no, f"bad multiplier {_shown(multiplier)}: a number, for FUT or CONTFUT only")
    con_id_text = field("con_id", "0")
    if not _DIGITS.fullmatch(con_id_text):
        raise UniverseError(path, line_no, f"bad con_id {_shown(con_id_text)}: expected a positive integer")
    return ContractSpec(
        symbol=symbol,
        sec_type=sec_type,
        exchange=names["exchange"],
        primary_exchange=names["primary_exchange"],
        currency=names["currency"],
        con_id=int(con_id_text),
        line=line_no,
        last_trade_date=expiry,
        multiplier=multiplier,
    )

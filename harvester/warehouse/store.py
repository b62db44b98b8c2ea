"""The Warehouse facade: open, claim series, stage answered requests, commit them, and the small tables.

Every table is a Delta table (`delta.DeltaTables`); there are no transactions across tables, so the commit
order is the crash-safety argument: (1) one bars transaction replaces every touched partition with its
rows merged with the staged ones, (2) only then one coverage transaction records what they cover (never a
refused bar's time: see quarantine.py), (3) the quarantine learns what came back bad or clean, (4) the
revisions and corporate actions the staged entries carry, (5) the journal is appended, (6) the staging is
dropped. A crash at any instant leaves staging in place; the next commit re-merges it (dedupe on
(con_id, ts) makes that a no-op for rows already merged; a repair checks its anchor bar and is applied
once), re-records coverage, revisions and actions (deduped) and skips quarantine rows that already saw the
answer, which yields exactly the fault-free state. A split repair staged with its answers rewrites every
partition of the series in the same bars transaction, so readers never see a series half at the old scale.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester.allocators import trim
from harvester.calendar import TradingCalendar
from harvester.ibrules import BAR_SIZES, WHAT_TO_SHOW
from harvester.model import BarRequest, HeadKey, HeldBar, Interval, Outcome, SeriesKey, subtract_intervals
from harvester.settings import QUARANTINE_NIGHTS
from harvester.warehouse import quarantine
from harvester.warehouse.checks import CheckedBars, check_bars
from harvester.warehouse.claims import Claims, Holder, Me
from harvester.warehouse.compaction import merge_newest_wins
from harvester.warehouse.coverage import CoverageIndex, dedupe_rows, naive_utc, trim_rows
from harvester.warehouse.damage import DamagedFile
from harvester.warehouse.delta import UNREADABLE, DeltaTables, one_batch, read_bars_file
from harvester.warehouse.files import WarehouseError, ensure_dir, write_json_atomic
from harvester.warehouse.layout import (
    BARS,
    CONTRACTS,
    CORPORATE_ACTIONS,
    CORRUPT_DIR,
    COVERAGE,
    FORMAT,
    HEADS,
    JOURNAL,
    PARTITIONS,
    QUARANTINE,
    REVISIONS,
    SYMBOLS,
    VERIFIED_FILE,
    WANTED,
    WINDOW_SIZES,
    PartitionKey,
    family_filters,
    local_state_dir,
    partition_of,
    partitions_of,
    partitions_predicate,
    periods_for,
    split_by_partition,
    with_partition,
)
from harvester.warehouse.lock import WarehouseLocked
from harvester.warehouse.meta import read_meta, write_meta
from harvester.warehouse.migrate import refuse_naive_bars, refuse_old_layout
from harvester.warehouse.repairs import (
    action_rows,
    apply_repair,
    json_rows,
    read_window,
    repair_applies,
    repair_partitions,
    revision_rows,
    symbol_history,
)
from harvester.warehouse.staging import StagedEntry, StagingArea
from harvester.warehouse.storage import Location, StorageError, check_writable
from harvester.warehouse.tables import (
    BARS_SCHEMA,
    BARS_TABLE_SCHEMA,
    CONTRACTS_SCHEMA,
    CORPORATE_ACTIONS_IDENTITY,
    CORPORATE_ACTIONS_SCHEMA,
    COVERAGE_SCHEMA,
    HEADS_SCHEMA,
    JOURNAL_SCHEMA,
    QUARANTINE_SCHEMA,
    REVISIONS_IDENTITY,
    REVISIONS_SCHEMA,
    SYMBOLS_SCHEMA,
    WANTED_SCHEMA,
    WINDOW_SIZES_SCHEMA,
    frame_to_table,
    rows_to_table,
    utc_now_naive,
)
from harvester.warehouse.wanted import spans_of, with_spans

__all__ = ["CommitStats", "MixedWarehouseError", "StageResult", "Warehouse", "WarehouseError",
           "WarehouseLocked"]

_run_counter = itertools.count()


class MixedWarehouseError(WarehouseError):
    """Simulated bars must never land in a real warehouse (or the reverse)."""



@dataclass(frozen=True)
class StageResult:
    kept: int
    quarantined: int
    covers: bool  # the request's window will be recorded as covered at commit


@dataclass(frozen=True)
class CorruptFile:
    path: Path
    moved_to: Path  # a copy kept for inspection; the table no longer lists the file
    error: str


@dataclass
class CommitStats:
    requests: int = 0
    rows_staged: int = 0
    partitions_written: int = 0
    rows_in_written_files: int = 0
    coverage_rows: int = 0
    revision_rows: int = 0
    repairs: int = 0
    quarantine_rows: int = 0  # rows of the quarantine table after it changed (0: unchanged)
    journal_rows: int = 0
    corrupt: list[CorruptFile] = field(default_factory=list)
    seconds: float = 0.0


def new_run_id() -> str:
    """Sortable by start time, so staged runs recover oldest first (newest fetch wins)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-p{os.getpid()}-{next(_run_counter)}"


class Warehouse:
    def __init__(self, location: Location | str | Path, simulated: bool | None,
                 quarantine_nights: int = QUARANTINE_NIGHTS) -> None:
        """Use `Warehouse.open`, which checks the location first."""
        self.location = location = Location.parse(location)
        self.data_dir = local_state_dir(location)  # the warehouse folder, or an S3 warehouse's local files
        self.simulated = simulated
        self.quarantine_nights = quarantine_nights  # bad nights before a refused bar is given up
        self.run_id = new_run_id()
        self.tables = DeltaTables(location, PARTITIONS)
        self._staging = StagingArea(self.data_dir)
        self._seq = itertools.count(1)
        self._batches = itertools.count(1)
        self._batch = self._next_batch()
        self._journal_seq = itertools.count(1)
        self._journal: list[dict] = []
        self._crash_hook: Callable[[str], None] = lambda step: None
        self._windows: dict[tuple, pa.Table] = {}  # stored rows of one overlap window, all conIds, per version
        self.claims = Claims(self.tables, Me.for_run(self.run_id))
        self._claiming = False  # direct API use without claims: a commit merges every staged answer

    def _next_batch(self) -> str:
        """Each commit closes the current staging batch, so committed batches go away with one rename."""
        return f"{self.run_id}-b{next(self._batches):06d}"

    @classmethod
    def open(cls, data_dir: str | Path | Location, *, simulated: bool | None, gateway: str = "",
             account: str = "", quarantine_nights: int = QUARANTINE_NIGHTS) -> Warehouse:
        """A local folder (created if missing) or `s3://bucket/prefix` (probed: reachable, writable, and
        honouring conditional writes, or refused in one line). `simulated=None`: not known yet; a harvest
        learns it from the gateway and calls `mark_origin` once connected."""
        try:
            loc = Location.parse(data_dir)
            check_writable(loc)
        except StorageError as exc:
            raise WarehouseError(str(exc)) from None
        if loc.is_local:
            path = Path(loc.root)
            if not os.access(path, os.W_OK | os.X_OK):
                raise WarehouseError(f"data directory {path} is not writable")
            refuse_old_layout(path)
        refuse_naive_bars(loc)
        warehouse = cls(loc, simulated, quarantine_nights)
        if simulated is not None:
            warehouse.mark_origin(simulated, gateway, account)
        return warehouse

    def mark_origin(self, simulated: bool, gateway: str = "", account: str = "", write: bool = True) -> None:
        """Refuse to mix simulated and real bars; a new warehouse is marked with what it will hold.

        Called once a gateway has answered (it says what it is), so a run that never connected, or a
        `--plan` (`write=False`), leaves no mark behind to refuse the next run with."""
        meta = read_meta(self.location)
        if meta is not None and "simulated" in meta and bool(meta["simulated"]) != simulated:
            theirs, mine = ("simulated", "real") if meta["simulated"] else ("real", "simulated")
            source = f" from {meta['gateway']}" if meta.get("gateway") else ""
            raise MixedWarehouseError(
                f"{self.location} holds {theirs} bars{source}; the gateway at {gateway or 'this port'} is "
                f"{'the simulator' if simulated else 'a real IB gateway'} (account {account or '?'}), whose "
                f"{mine} bars must not mix with them: give this run its own --data-dir")
        self.simulated = simulated
        if meta is None and write:
            write_meta(self.location, {
                "format": FORMAT, "simulated": simulated, "gateway": gateway, "account": account,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            })

    def claim(self, keys: list[SeriesKey]) -> dict[SeriesKey, Holder]:
        """Claim these series for this run (see `claims`); returns those another live job holds. From the
        first claim on, a commit merges only staged answers of series this run holds."""
        self._claiming = True
        return self.claims.take(keys)

    # -- small tables -------------------------------------------------------------------------------------

    def _read(self, name: str, schema: pa.Schema) -> pa.Table:
        return self.tables.read(name, schema)

    def coverage(self) -> CoverageIndex:
        return CoverageIndex.from_frame(self._read(COVERAGE, COVERAGE_SCHEMA).to_pandas())

    def wanted(self) -> dict[SeriesKey, list[Interval]]:
        """The spans each series was asked for (wanted.py), merged, UTC-aware."""
        return spans_of(self._read(WANTED, WANTED_SCHEMA).to_pandas())

    def want(self, spans: dict[SeriesKey, Interval]) -> None:
        """Record the spans these series are asked for, joined to what they were (nothing written when they add
        nothing): before anything is fetched, so an interrupted run still shows what it left missing."""
        if not spans or with_spans(self._read(WANTED, WANTED_SCHEMA).to_pandas(), spans, datetime.now(UTC)) is None:
            return

        def build(snapshot) -> tuple[pa.Table, str]:
            old = self.tables.read(WANTED, WANTED_SCHEMA, snapshot).to_pandas()
            rows = with_spans(old, spans, datetime.now(UTC))
            return pa.Table.from_pandas(old if rows is None else rows, schema=WANTED_SCHEMA,
                                        preserve_index=False), "true"

        self.tables.transact(WANTED, build, WANTED_SCHEMA)

    def journal(self) -> pd.DataFrame:
        """Every request attempt committed so far (the pacing budget's seed)."""
        return self._read(JOURNAL, JOURNAL_SCHEMA).to_pandas()

    def heads(self) -> dict[HeadKey, datetime]:
        frame = self._read(HEADS, HEADS_SCHEMA).to_pandas()
        return {
            HeadKey(int(r.con_id), str(r.what_to_show), bool(r.use_rth)): pd.Timestamp(r.head_ts)
            .tz_localize(UTC).to_pydatetime()
            for r in frame.itertuples(index=False)
        }

    def save_head(self, key: HeadKey, head_ts: datetime) -> None:
        if key.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {key.what_to_show!r}")
        row = {"con_id": key.con_id, "what_to_show": key.what_to_show, "use_rth": key.use_rth,
               "head_ts": naive_utc(head_ts).to_pydatetime(), "fetched_at": utc_now_naive()}
        self._upsert(HEADS, HEADS_SCHEMA, rows_to_table([row], HEADS_SCHEMA, "head"), ["con_id", "what_to_show", "use_rth"])

    def window_sizes(self) -> dict[str, int]:
        """The learned bars target per IB bar size name (`ib.windows`)."""
        frame = self._read(WINDOW_SIZES, WINDOW_SIZES_SCHEMA).to_pandas()
        return {str(r.bar_size): int(r.target_bars) for r in frame.itertuples(index=False)}

    def save_window_sizes(self, targets: dict[str, int]) -> None:
        rows = [{"bar_size": name, "target_bars": int(bars), "learned_at": utc_now_naive()}
                for name, bars in sorted(targets.items()) if name in BAR_SIZES]
        if rows:
            self._upsert(WINDOW_SIZES, WINDOW_SIZES_SCHEMA, rows_to_table(rows, WINDOW_SIZES_SCHEMA, "window size"),
                         ["bar_size"])

    def contracts(self) -> pd.DataFrame:
        return self._read(CONTRACTS, CONTRACTS_SCHEMA).to_pandas()

    def save_contracts(self, df: pd.DataFrame) -> None:
        if "con_id" not in df.columns or df["con_id"].isna().any():
            raise WarehouseError("contracts frame needs a con_id on every row")
        if "qualified_at" not in df.columns:
            df = df.assign(qualified_at=utc_now_naive())
        table = frame_to_table(df, CONTRACTS_SCHEMA, "contracts")
        before = self._upsert(CONTRACTS, CONTRACTS_SCHEMA, table, ["con_id"])
        qualified = table.to_pandas()
        identity = ["con_id", "symbol", "exchange", "primary_exchange"]
        changed = qualified.merge(before[identity], on=identity, how="left", indicator=True)["_merge"] == "left_only"
        if changed.any():  # new conIds, or known ones under another symbol or exchange
            self._record_symbols(qualified[changed.to_numpy()], before)
            self._relabel(before, qualified)

    def _relabel(self, before: pd.DataFrame, qualified: pd.DataFrame) -> None:
        """A conId now under another symbol: its stored bars take the new one at the next commit (one repair
        entry per series, so the bars view always shows a conId's current symbol)."""
        old = dict(zip(before["con_id"].tolist(), before["symbol"].tolist()))
        renamed = {c: s for c, s in zip(qualified["con_id"].tolist(), qualified["symbol"].tolist())
                   if old.get(c, s) != s}
        if not renamed:
            return
        coverage = self.coverage()
        for key in coverage.series():
            if key.con_id in renamed:
                spans = coverage.intervals(key)
                self.stage_repair(key, renamed[key.con_id], spans[0][0], spans[-1][1],
                                  {"mode": "relabel", "symbol": renamed[key.con_id]})

    def symbols(self) -> pd.DataFrame:
        """Every conId's symbols and exchanges over time (SYMBOLS_SCHEMA)."""
        return self._read(SYMBOLS, SYMBOLS_SCHEMA).to_pandas()

    def _record_symbols(self, qualified: pd.DataFrame, before: pd.DataFrame) -> None:
        """A qualification that sees a conId under a new symbol or exchange closes the conId's current row
        and opens one from that instant (`before`: the contracts as they were, for conIds stored before the
        symbols table existed)."""
        def build(snapshot) -> tuple[pa.Table, str]:
            rows = self.tables.read(SYMBOLS, SYMBOLS_SCHEMA, snapshot).to_pandas()
            return pa.Table.from_pandas(symbol_history(rows, qualified, before), schema=SYMBOLS_SCHEMA,
                                        preserve_index=False), "true"

        self.tables.transact(SYMBOLS, build, SYMBOLS_SCHEMA)

    def _upsert(self, name: str, schema: pa.Schema, new: pa.Table, key: list[str]) -> pd.DataFrame:
        """The whole (small) table rewritten in one transaction, the new rows winning on `key`; returns the
        rows it replaced (the table as it was)."""
        replaced = []

        def build(snapshot) -> tuple[pa.Table, str]:
            old = self.tables.read(name, schema, snapshot).to_pandas()
            replaced[:] = [old]
            merged = pd.concat([old, new.to_pandas()], ignore_index=True)
            merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key)
            return pa.Table.from_pandas(merged, schema=schema, preserve_index=False), "true"

        self.tables.transact(name, build, schema)
        return replaced[0]

    # -- staging and journal ------------------------------------------------------------------------------

    def stage(self, request: BarRequest, outcome: Outcome, bars: pd.DataFrame | None, *, symbol: str,
              calendar: TradingCalendar | None = None, seen_at: datetime | None = None) -> StageResult:
        """Check one answer at the door and stage it; `seen_at` is the gateway's clock (nights are counted
        in it), this machine's when not given."""
        checked = self.check(request, bars, symbol=symbol, calendar=calendar)
        self.stage_checked(request, outcome, checked, symbol=symbol, seen_at=seen_at)
        return StageResult(checked.kept.num_rows, checked.quarantined.num_rows, outcome.covers)

    def check(self, request: BarRequest, bars: pd.DataFrame | None, *, symbol: str,
              calendar: TradingCalendar | None = None) -> CheckedBars:
        """The door: rows to keep and rows refused (staged with them: a series under repair holds its answers)."""
        s = request.series
        if s.bar_size not in BAR_SIZES:
            raise WarehouseError(f"unknown bar size {s.bar_size!r} for {symbol}")
        if s.what_to_show not in WHAT_TO_SHOW:
            raise WarehouseError(f"unknown whatToShow {s.what_to_show!r} for {symbol}")
        return check_bars(request, bars, symbol, calendar)

    def stage_checked(self, request: BarRequest, outcome: Outcome, checked: CheckedBars, *, symbol: str,
                      revised: pd.DataFrame | None = None, seen_at: datetime | None = None) -> None:
        """Stage an answer past the door; `revised` (changes.OverlapVerdict.revised) is recorded after it."""
        seen_at = seen_at or datetime.now(UTC)
        extra = {}
        if revised is not None and len(revised):
            extra["revised"] = {"at": seen_at.isoformat(), "rows": json_rows(revised)}
        self._staging.put(self._batch, next(self._seq), request, outcome, checked.kept, symbol, checked.quarantined,
                          seen_at, extra)

    def stage_repair(self, series: SeriesKey, symbol: str, start: datetime, end: datetime, repair: dict) -> None:
        """Stage a repair of the series' stored bars in [start, end): `repair["mode"]` "rescale" (prices ×
        `price_ratio`, applied unless the `anchor` bar already shows it) or "replace" (the stored rows go;
        the answers staged after it are the series). `repair["action"]` is its corporate_actions row."""
        request = BarRequest(series, start, end, "", 0, symbol)
        self._staging.put(self._batch, next(self._seq), request, Outcome.BARS, BARS_SCHEMA.empty_table(), symbol,
                          extra={"repair": repair})

    def stored_rows(self, series: SeriesKey, start: datetime, end: datetime) -> pa.Table:
        """The series' committed bars starting in [start, end). A night's overlap windows are the same for
        every series, so one read of the window serves them all (kept until the next commit)."""
        size = BAR_SIZES[series.bar_size]
        snapshot = self.tables.open(BARS)
        if snapshot is None:
            return BARS_SCHEMA.empty_table()
        key = (size.label, series.what_to_show, series.use_rth, start, end, snapshot.version())
        if key not in self._windows:
            files = self.tables.files(BARS, snapshot, family_filters(size.label, series.what_to_show,
                                                                     series.use_rth, periods_for(size, start, end)))
            self._windows = {k: v for k, v in self._windows.items() if k[-1] == key[-1]}  # this version's only
            self._windows[key] = read_window(self.tables, files, start, end)
        rows = self._windows[key]
        return rows.filter(pc.equal(rows["con_id"], series.con_id))

    def series_rows(self, series: SeriesKey, start: datetime, end: datetime) -> pa.Table:
        """One series' committed bars starting in [start, end), sorted by ts (a repair reads its series)."""
        size = BAR_SIZES[series.bar_size]
        snapshot = self.tables.open(BARS)
        if snapshot is None:
            return BARS_SCHEMA.empty_table()
        files = self.tables.files(BARS, snapshot, family_filters(size.label, series.what_to_show, series.use_rth,
                                                                 periods_for(size, start, end)))
        return read_window(self.tables, files, start, end, series.con_id)

    def held_bars(self) -> dict[SeriesKey, list[HeldBar]]:
        """Bars refused at the door whose time is still missing, by series (given-up ones included)."""
        return quarantine.held_bars(self._read(QUARANTINE, QUARANTINE_SCHEMA).to_pylist())

    def record_request(self, row: dict) -> None:
        self._journal.append({"run_id": self.run_id, **row})

    def _flush_journal(self) -> int:
        if not self._journal:
            return 0
        table = rows_to_table(self._journal, JOURNAL_SCHEMA, "journal")
        self.tables.transact(JOURNAL, lambda _: (table, None), JOURNAL_SCHEMA)
        self._journal.clear()
        return table.num_rows

    # -- commit ---------------------------------------------------------------------------------------------

    def commit(self) -> CommitStats:
        started = datetime.now(UTC)
        self._batch = self._next_batch()
        entries = self._staging.entries()
        if self._claiming:  # another live job's answers are its to commit
            entries = [e for e in entries if e.series in self.claims.held or _own_relabel(e, self.run_id)]
        stats = CommitStats(requests=len(entries), rows_staged=sum(e.rows for e in entries))
        self._merge_partitions(entries, stats)
        self._crash_hook("bars_durable")
        stats.coverage_rows = self._record_coverage(entries)
        self._crash_hook("coverage_durable")
        stats.quarantine_rows = self._record_quarantine(entries)
        self._crash_hook("quarantine_durable")
        stats.revision_rows = self._record_revisions(entries)
        stats.repairs = self._record_actions(entries)
        stats.journal_rows = self._flush_journal()
        self._crash_hook("journal_durable")
        self._staging.drop(entries)
        trim()  # what the merge freed goes back to the system before the next batch is fetched
        stats.seconds = (datetime.now(UTC) - started).total_seconds()
        return stats

    def _merge_partitions(self, entries: list[StagedEntry], stats: CommitStats) -> None:
        """Every touched partition is replaced by its rows merged with the staged ones, in fetch order; a
        repair entry rewrites every partition its series spans, at its place in that order.

        The rows stream to delta-rs one partition at a time (stored + staged rows of that partition only), but
        delta-rs keeps every partition's file open in memory until its transaction ends, so the partitions go in
        transactions of at most `COMMIT_ROWS` rows (stored + staged; one partition at least): a commit's memory
        is bounded by that, not by what was staged. A crash between two leaves staging in place and coverage
        unrecorded, as a crash after the bars transaction always did. With a repair staged, one transaction:
        readers never see a series half at the old scale."""
        touched: dict[PartitionKey, list[tuple[int, StagedEntry]]] = {}
        staged_rows: dict[PartitionKey, int] = {}
        repairs: list[tuple[int, StagedEntry]] = []
        for position, entry in enumerate(entries):
            s = entry.series
            if entry.is_repair:
                repairs.append((position, entry))
            elif entry.rows:
                label = BAR_SIZES[s.bar_size].label
                for key, n in partitions_of(entry.read_session_dates(), label, s.what_to_show, s.use_rth).items():
                    touched.setdefault(key, []).append((position, entry))
                    staged_rows[key] = staged_rows.get(key, 0) + n
        if not touched and not any(repair_partitions(self.tables, self.tables.open(BARS), e) for _, e in repairs):
            return
        stats.partitions_written = stats.rows_in_written_files = 0
        if repairs:
            self._merge_transaction(entries, touched, repairs, stats)
            return
        stored = _stored_rows(self.tables.open(BARS))
        for group in commit_groups({k: stored.get(k, 0) + n for k, n in staged_rows.items()}, COMMIT_ROWS):
            self._merge_transaction(entries, {k: touched[k] for k in group}, [], stats)

    def _merge_transaction(self, entries: list[StagedEntry], touched: dict[PartitionKey, list[tuple[int, StagedEntry]]],
                           repairs: list[tuple[int, StagedEntry]], stats: CommitStats) -> None:
        """One bars transaction replacing these partitions (and those the repairs span) by their merged rows."""
        damaged: list[DamagedFile] = []
        written = [0, 0]  # partitions, rows: of the last build (a conflict builds again)

        def read(files: list[str]) -> list[pa.Table]:
            try:
                return self._read_partition(files)
            except DamagedFile as exc:
                damaged.append(exc)
                raise

        def merged(files: dict[PartitionKey, list[str]], live: dict[int, set[PartitionKey]]
                   ) -> Iterator[pa.RecordBatch]:
            """Runs inside delta-rs's writer: no deltalake call may happen here (its runtime would nest)."""
            written[:] = [0, 0]
            for key in sorted(files):
                rows = read(files[key])
                steps = sorted([*touched.get(key, []), *((p, None) for p, keys in live.items() if key in keys)],
                               key=lambda step: step[0])
                for position, entry in steps:
                    if entry is None:  # table by table: each keeps its place in the newest-wins order
                        rows = [apply_repair(table, entries[position]) for table in rows]
                    else:
                        rows += [part for k, part in split_by_partition(
                            entry.read_bars(), key.label, key.what_to_show, key.use_rth) if k == key]
                out = merge_newest_wins(rows) if rows else BARS_SCHEMA.empty_table()
                del rows
                out = with_partition(key, out).cast(BARS_TABLE_SCHEMA)
                written[0] += 1
                written[1] += out.num_rows
                yield from one_batch(out).to_batches()

        def build(snapshot) -> tuple[pa.RecordBatchReader, str]:
            spans = {p: repair_partitions(self.tables, snapshot, e) for p, e in repairs}
            keys = set(touched).union(*spans.values())
            files = {key: self._partition_files(snapshot, key) for key in keys}
            live = {p: spans[p] for p, e in repairs
                    if repair_applies(e, lambda key: read(files[key]) if key in files else [])}
            keys = set(touched).union(*live.values())
            files = {key: files[key] for key in keys}
            reader = pa.RecordBatchReader.from_batches(BARS_TABLE_SCHEMA, merged(files, live))
            return reader, partitions_predicate(sorted(keys)) if keys else "false"

        while True:
            try:
                self.tables.transact(BARS, build, BARS_TABLE_SCHEMA)
                stats.partitions_written += written[0]
                stats.rows_in_written_files += written[1]
                return
            except WarehouseError:  # DamagedFile is one
                if not damaged:
                    raise
                stats.corrupt.append(self._drop_corrupt(Path(damaged[0].path), damaged[0].error))
                damaged.clear()  # dropped from its partition: the merge is built again

    def _partition_files(self, snapshot, key: PartitionKey) -> list[str]:
        if snapshot is None:
            return []
        return self.tables.files(BARS, snapshot, family_filters(key.label, key.what_to_show, key.use_rth, [key.period]))

    def _read_partition(self, files: list[str]) -> list[pa.Table]:
        """The partition's stored rows, each file read whole: a damaged file must not vanish into a merge."""
        rows = []
        for uri in files:
            try:
                rows.append(read_bars_file(uri, self.location))
            except (*UNREADABLE, KeyError) as exc:
                if not self.location.is_local:
                    raise WarehouseError(f"unreadable data file {uri}: {exc}") from exc
                raise DamagedFile(uri, str(exc)) from exc
        return rows

    def _record_coverage(self, entries: list[StagedEntry]) -> int:
        now = utc_now_naive()
        new = [
            {
                "con_id": e.series.con_id, "bar_size": e.series.bar_size, "what_to_show": e.series.what_to_show,
                "use_rth": e.series.use_rth, "start_ts": naive_utc(start).to_pydatetime(),
                "end_ts": naive_utc(end).to_pydatetime(), "kind": "bars" if e.outcome is Outcome.BARS else "empty",
                "bars": bars, "recorded_at": now,
            }
            for e in entries
            if e.outcome.covers and not e.is_repair
            for start, end, bars in _covered_spans(e)
        ]
        if not new:
            return 0
        fresh = rows_to_table(new, COVERAGE_SCHEMA, "coverage").to_pandas()
        self._write_coverage(lambda rows: pd.concat([rows, fresh], ignore_index=True))
        return len(new)

    def _record_quarantine(self, entries: list[StagedEntry]) -> int:
        """Refused bars sighted, still-missing ones resolved by a clean answer: one transaction, or none."""
        snapshot = self.tables.open(QUARANTINE)
        if snapshot is None and not any(e.rejected for e in entries):
            return 0
        answers = [
            quarantine.Answer(e.answer_id, e.series, e.start, e.end, e.seen_at or datetime.now(UTC),
                              e.read_rejected().to_pylist() if e.rejected else [])
            for e in entries
            if not e.is_repair  # a repair answers nothing: it must not resolve held bars
        ]

        def applied(snapshot) -> tuple[list[dict], list[dict] | None]:
            rows = self.tables.read(QUARANTINE, QUARANTINE_SCHEMA, snapshot).to_pylist()
            return rows, quarantine.apply_answers(rows, answers, self.quarantine_nights, utc_now_naive())

        def build(snapshot) -> tuple[pa.Table, str]:
            rows, after = applied(snapshot)
            return rows_to_table(rows if after is None else after, QUARANTINE_SCHEMA, "quarantine"), "true"

        _, after = applied(snapshot)
        if after is None:
            return 0
        self.tables.transact(QUARANTINE, build, QUARANTINE_SCHEMA)
        return len(after)

    def _record_revisions(self, entries: list[StagedEntry]) -> int:
        """The stored bars each staged answer revised (kept in the entry since it was compared), deduped."""
        fresh = revision_rows(entries)
        if fresh is None:
            return 0
        self._append_deduped(REVISIONS, REVISIONS_SCHEMA, fresh, REVISIONS_IDENTITY)
        return fresh.num_rows

    def _record_actions(self, entries: list[StagedEntry]) -> int:
        """The corporate_actions row of each staged repair, deduped (a recovery commit sees it again)."""
        fresh = action_rows(entries)
        if fresh is None:
            return 0
        self._append_deduped(CORPORATE_ACTIONS, CORPORATE_ACTIONS_SCHEMA, fresh, CORPORATE_ACTIONS_IDENTITY)
        return fresh.num_rows

    def _append_deduped(self, name: str, schema: pa.Schema, fresh: pa.Table, identity: list[str]) -> None:
        """Rows added in one transaction, unless rows with the same identity are already there."""
        def build(snapshot) -> tuple[pa.Table, str]:
            old = self.tables.read(name, schema, snapshot).to_pandas()
            merged = pd.concat([old, fresh.to_pandas()], ignore_index=True).drop_duplicates(identity, keep="first")
            return pa.Table.from_pandas(merged, schema=schema, preserve_index=False), "true"

        self.tables.transact(name, build, schema)

    def revisions(self) -> pd.DataFrame:
        return self._read(REVISIONS, REVISIONS_SCHEMA).to_pandas()

    def corporate_actions(self) -> pd.DataFrame:
        return self._read(CORPORATE_ACTIONS, CORPORATE_ACTIONS_SCHEMA).to_pandas()

    def _write_coverage(self, change) -> None:
        """Coverage rewritten whole in one transaction: `change(rows)` on the latest snapshot's rows."""
        def build(snapshot) -> tuple[pa.Table, str]:
            rows = change(self.tables.read(COVERAGE, COVERAGE_SCHEMA, snapshot).to_pandas())
            return pa.Table.from_pandas(dedupe_rows(rows), schema=COVERAGE_SCHEMA, preserve_index=False), "true"

        self.tables.transact(COVERAGE, build, COVERAGE_SCHEMA)

    def verify(self) -> list[CorruptFile]:
        """Read back every bars data file not verified yet; a damaged one is dropped from its partition (the
        other files' rows stay) and its partition's coverage is forgotten, so the next plan refetches it.

        Delta data files are never rewritten, so a file verified once stays good unless damaged by hand:
        the (size, mtime) record catches that too. On S3 a PUT is whole or absent: nothing to verify.
        """
        if not self.location.is_local:
            return []
        record_path = self.data_dir / VERIFIED_FILE
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        snapshot = self.tables.open(BARS)
        if snapshot is None:
            return []
        corrupt, seen = [], {}
        for uri in snapshot.file_uris():
            path = Path(uri)
            try:
                st = path.stat()
            except OSError as exc:
                corrupt.append(self._drop_corrupt(path, str(exc)))
                continue
            stamp = [st.st_size, st.st_mtime_ns]
            rel = str(path.relative_to(self.data_dir))
            if record.get(rel) != stamp:
                try:
                    pq.read_table(path)
                except UNREADABLE as exc:
                    corrupt.append(self._drop_corrupt(path, str(exc)))
                    continue
            seen[rel] = stamp
        write_json_atomic(record_path, seen)
        return corrupt

    def _drop_corrupt(self, path: Path, error: str) -> CorruptFile:
        """Forget the partition's coverage first (claiming less than is stored is safe), then replace the
        partition by the rows of its other files, keeping a copy of the damaged one."""
        key = partition_of(self.data_dir / BARS, path)
        start, end = key.utc_range()
        self._write_coverage(lambda rows: _trim_family(rows, key, start, end))
        target = self.data_dir / CORRUPT_DIR / path.relative_to(self.data_dir)
        ensure_dir(target.parent)
        if path.exists():
            shutil.copyfile(path, target)

        def build(snapshot) -> tuple[pa.Table, str]:
            filters = family_filters(key.label, key.what_to_show, key.use_rth, [key.period])
            others = [f for f in self.tables.files(BARS, snapshot, filters) if Path(f) != path]
            kept = _read_good(others)
            return with_partition(key, kept), partitions_predicate([key])

        self.tables.transact(BARS, build, BARS_TABLE_SCHEMA)
        return CorruptFile(path, target, error)

    def version(self) -> int | None:
        """The bars table's version: what `harvest status` shows and `queries.connect(as_of=...)` takes."""
        return self.tables.version(BARS)

    def close(self) -> None:
        """Flush the journal and delete committed staging batches. stage() and commit() must not overlap."""
        self._flush_journal()
        self._staging.empty_trash()
        self.claims.release()


# Rows (stored + staged) of the partitions one bars transaction rewrites: delta-rs holds every partition's file
# open until the transaction ends (measured: 40 partitions of 100 k rows, 990 MB; one of 100 k, 246 MB). The
# daily backfill of the S&P 500's first 200 names peaked at 588 MB with 500 k, 498 MB with 250 k.
COMMIT_ROWS = 250_000


def commit_groups(rows: dict[PartitionKey, int], limit: int) -> list[list[PartitionKey]]:
    """The partitions in order, cut into consecutive groups of at most `limit` rows (one partition at least)."""
    groups: list[list[PartitionKey]] = []
    total = 0
    for key in sorted(rows):
        if not groups or total + rows[key] > limit:
            groups.append([])
            total = 0
        groups[-1].append(key)
        total += rows[key]
    return groups


def _stored_rows(snapshot) -> dict[PartitionKey, int]:
    """Rows per bars partition of a snapshot, from its log (no data file is opened)."""
    if snapshot is None:
        return {}
    actions = pa.table(snapshot.get_add_actions(flatten=True)).to_pydict()
    rows: dict[PartitionKey, int] = {}
    for label, what, rth, period, n in zip(actions["partition.bar_size"], actions["partition.what_to_show"],
                                          actions["partition.use_rth"], actions["partition.period"],
                                          actions["num_records"], strict=True):
        key = PartitionKey(label, what, rth in (True, "true"), period)
        rows[key] = rows.get(key, 0) + (n or 0)
    return rows


def _covered_spans(entry: StagedEntry) -> list[tuple[datetime, datetime, int | None]]:
    """What one answer covers: its window, minus the time of every bar refused from it; each span with the
    bars kept in it."""
    if not entry.rejected:
        return [(entry.start, entry.end, entry.rows)]
    spans = subtract_intervals([(entry.start, entry.end)], quarantine.holes(entry.read_rejected(), entry.series.bar_size))
    kept = entry.read_bars()
    ts = [] if kept is None else sorted(pd.to_datetime(kept["ts"].to_pylist(), utc=True))  # staged naive before format 3
    return [(a, b, sum(1 for t in ts if a <= t < b)) for a, b in spans]


def _own_relabel(entry: StagedEntry, run_id: str) -> bool:
    """A relabel staged by this run (idempotent; its series need not be harvested tonight)."""
    return entry.is_repair and entry.extra["repair"]["mode"] == "relabel" and entry.run_id == run_id


def _trim_family(rows: pd.DataFrame, key: PartitionKey, start: datetime, end: datetime) -> pd.DataFrame:
    for bar_size in key.ib_bar_sizes():
        rows = trim_rows(rows, [bar_size], key.what_to_show, key.use_rth, start, end)
    return rows


def _read_good(files: list[str]) -> pa.Table:
    """The rows of the files that still read; a second damaged file is left for the next verify."""
    tables = []
    for f in files:
        try:
            tables.append(read_bars_file(f))
        except UNREADABLE:
            continue
    return pa.concat_tables(tables) if tables else BARS_SCHEMA.empty_table()


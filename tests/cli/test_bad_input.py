"""Bad input: each refused with one line naming the culprit and a distinct exit code, nothing stored touched,
nothing written outside the data directory. Also what the warehouse itself can hold that is bad (a corrupt
or truncated Parquet file, a full disk) and bad bars from IB (quarantined at the door, with a reason).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import queries
from harvester.cli import Exit, main
from tests.helpers.reference import (
    PACING_SCALE,
    SIM_NOW,
    Span,
    compare,
    reader_hazards,
    reference_dir,
    write_toml,
)
from tests.helpers.warehouses import snapshot_files

SPAN = Span(("AAPL", "MSFT"))
HARVEST = str(Path(sys.executable).with_name("harvest"))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path → content hash): what "nothing touched" compares."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A complete warehouse (a copy of the reference harvest) that bad input must leave untouched."""
    data = tmp_path / "data"
    shutil.copytree(reference_dir(SPAN), data)
    return data


def run_cli(tmp_path: Path, data: Path, universe_bytes: bytes, *options: str):
    """`harvest` in this process from `tmp_path/cwd`; returns the result and whether anything outside
    `data` changed (the whole tmp_path tree minus the warehouse)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    (cwd / "universe.csv").write_bytes(universe_bytes)
    write_toml(cwd, SPAN)
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("data/")}
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, ["--universe", "universe.csv", "--data-dir", str(data), *SPAN.cli_args(),
                                           "--sim", "--sim-now", SIM_NOW, "--pacing-scale", str(PACING_SCALE),
                                           *options])
    finally:
        os.chdir(old)
    outside_after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("data/")}
    return result, outside_after == outside_before


def assert_refused(result, culprit: str) -> None:
    assert result.exit_code == Exit.BAD_INPUT, result.output
    message = result.stderr.strip()
    assert message and "\n" not in message, message
    assert culprit in message, message


MILLION = ("symbol\n" + "".join(f"S{i}\n" for i in range(1_000_000))).encode()
UNIVERSES = {
    "empty": (b"", "empty"),
    "header only": (b"symbol\n", "no rows"),
    "no symbol column": (b"name,sector\nApple,Tech\n", "symbol"),
    "bad encoding": (b"symbol\nAAPL\nCAF\xe9\n", "UTF-8"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    "one million rows": (MILLION, "more than"),
    "conflicting duplicate": (b"symbol,currency\nAAPL,USD\nAAPL,EUR\n", "AAPL"),
    "path traversal": (b"symbol\nAAPL\n../../etc\n", "../../etc"),
    "sql injection": (b"symbol\nA';DROP TABLE bars;--\n", "DROP TABLE"),
    "shell injection": (b"symbol\n$(rm -rf)\n", "$(rm -rf)"),
    "cyrillic look-alike": ("symbol\n\u0410APL\n".encode(), "APL"),
    "zero-width space": ("symbol\nAAPL\u200b\n".encode(), "AAPL"),
    "fullwidth letters": ("symbol\n\uff21\uff21\uff30\uff2c\n".encode(), "\uff21"),
    "absolute path": (b"symbol\n/etc/passwd\n", "/etc/passwd"),
}


@pytest.mark.parametrize("case", UNIVERSES, ids=list(UNIVERSES))
def test_bad_universe_is_refused_naming_the_culprit_and_touches_nothing(tmp_path, stored, case):
    content, culprit = UNIVERSES[case]
    before = snapshot(stored)
    result, outside_unchanged = run_cli(tmp_path, stored, content)
    assert_refused(result, culprit)
    assert "universe.csv" in result.stderr
    assert snapshot(stored) == before and outside_unchanged


BAD_OPTIONS = {
    "unknown bar size": (["--bar-size", "7 min"], "7 min"),
    "start after end": (["--start", "2024-06-01", "--end", "2024-05-01"], "start"),
    "end in the future": (["--end", "2999-01-01"], "future"),
    "impossible date": (["--start", "2024-02-30"], "--start"),
    "negative port": (["--port", "-1"], "--port"),
    "negative client id": (["--client-id", "-3"], "--client-id"),
    "negative pacing scale": (["--pacing-scale", "-1"], "--pacing-scale"),
    "unknown whatToShow": (["--what", "../../x"], "../../x"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_bad_option_is_refused_naming_it_and_touches_nothing(tmp_path, stored, case):
    options, culprit = BAD_OPTIONS[case]
    before = snapshot(stored)
    result, outside_unchanged = run_cli(tmp_path, stored, SPAN.universe_csv().encode(), *options)
    assert_refused(result, culprit)
    assert snapshot(stored) == before and outside_unchanged


def test_duplicate_symbols_are_harvested_once(tmp_path, stored):
    result, outside_unchanged = run_cli(tmp_path, stored, b"symbol\nAAPL\nMSFT\nAAPL\n")
    assert result.exit_code == Exit.OK, result.output
    assert compare(stored, reference_dir(SPAN)).clean and outside_unchanged


def test_unwritable_data_directory_is_refused(tmp_path):
    """As root chmod does not stop writes, so the data directory goes under a regular file instead."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    data = blocker / "data"
    if os.geteuid() != 0:
        data = tmp_path / "locked" / "data"
        data.parent.mkdir()
        data.parent.chmod(0o500)
    result, outside_unchanged = run_cli(tmp_path, data, SPAN.universe_csv().encode())
    assert_refused(result, str(data.parent))
    assert not data.exists() and outside_unchanged
    assert blocker.read_text() == "not a directory\n"


def test_full_disk_fails_the_commit_cleanly_and_the_rerun_completes(tmp_path):
    """ENOSPC cannot be had without mounting a tmpfs (not allowed here): RLIMIT_FSIZE makes every write past
    16 KiB fail with EFBIG instead, which the writer reports as "disk full" like ENOSPC and EDQUOT."""
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    write_toml(cwd, SPAN, commit_every_s=60)
    (cwd / "u.csv").write_text(SPAN.universe_csv())
    args = [HARVEST, "--universe", "u.csv", "--data-dir", str(data), *SPAN.cli_args(), "--sim", "--sim-now",
            SIM_NOW, "--pacing-scale", str(PACING_SCALE)]

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    full = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=small_disk,
                          check=False)
    assert full.returncode not in (Exit.OK, -signal.SIGXFSZ), full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert "disk full" in last and "cannot write" in last, full.stderr
    assert reader_hazards(data) == []
    assert queries.connect(data).execute("SELECT count(*) FROM bars").fetchall()[0][0] >= 0
    rerun = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == Exit.OK, rerun.stderr
    assert compare(data, reference_dir(SPAN)).clean


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_corrupt_partition_is_quarantined_and_refetched(tmp_path, stored, damage):
    victim = Path(min(snapshot_files(stored)))
    raw = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(raw[: len(raw) // 2])
    else:
        middle = len(raw) // 2
        victim.write_bytes(raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 512]) + raw[middle + 512:])
    result, _ = run_cli(tmp_path, stored, SPAN.universe_csv().encode())
    assert result.exit_code == Exit.OK, result.output
    assert list((stored / "corrupt").rglob(victim.name)), "no copy kept for inspection"
    assert str(victim) not in snapshot_files(stored)
    assert reader_hazards(stored) == []
    assert compare(stored, reference_dir(SPAN)).clean


@pytest.mark.parametrize(
    ("sql", "culprit"),
    [
        ("COPY (SELECT * FROM bars) TO '{out}/stolen.csv'", "COPY"),
        ("ATTACH '{out}/other.duckdb' AS other", "ATTACH"),
        ("SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'", "COPY"),
        ("INSTALL httpfs", "refused"),
        ("SET enable_external_access = true", "SET"),
        ("SELECT * FROM read_csv('{out}/secret.txt')", "secret.txt"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/explained.csv'", "COPY"),
    ],
)
def test_query_refuses_writes_attach_and_files_outside(tmp_path, stored, sql, culprit):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("secret\n")
    before, outside_before = snapshot(stored), snapshot(out)
    result = CliRunner().invoke(main, ["query", sql.format(out=out), "--data-dir", str(stored)])
    assert result.exit_code == Exit.BAD_INPUT, result.output
    assert culprit.lower() in result.stderr.lower() and "\n" not in result.stderr.strip(), result.stderr
    assert snapshot(stored) == before and snapshot(out) == outside_before


def test_query_writes_only_when_explicitly_allowed(tmp_path, stored):
    target = tmp_path / "export.csv"
    result = CliRunner().invoke(main, ["query", f"COPY (SELECT symbol FROM bars) TO '{target}'", "--allow-writes",
                                       "--data-dir", str(stored)])
    assert result.exit_code == Exit.OK, result.output
    assert len(target.read_text().splitlines()) == compare(stored, stored).actual + 1  # header + rows


def test_bad_bars_from_ib_are_quarantined_with_a_reason(make_gateway, tmp_path):
    """A replayed answer with an OHLC violation, a negative volume, a weekend bar and IB's -1 sentinel."""
    from tests.helpers.gateways import next_client_id
    from tests.helpers.reference import harvest_with

    good = pd.date_range("2024-06-10 13:30", periods=13, freq="30min", tz="UTC")
    rows = [{"symbol": "AAPL", "ts": ts, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
             "volume": 1000.0, "wap": 100.2, "bar_count": 10} for ts in good]
    rows[2].update(high=98.0)  # high below low, open and close
    rows[3].update(close=105.0)  # close above high
    rows[4].update(volume=-5.0)  # negative volume that is not IB's sentinel
    rows[5].update(volume=-1.0, wap=-1.0, bar_count=-1)  # IB's "not available": stored as NULL
    night = pd.Timestamp("2024-06-11 03:00", tz="UTC")  # 23:00 in New York: outside even extended hours
    rows.append({**rows[0], "ts": night})
    replay = tmp_path / "replay.csv"
    pd.DataFrame(rows).to_csv(replay, index=False)
    gw = make_gateway(replay=str(replay))
    span = Span(("AAPL",), start=SPAN.start.replace(month=6, day=7), end=SPAN.end.replace(day=11))
    report = harvest_with(gw, tmp_path / "data", span, next_client_id(), use_rth=False)
    assert report.ok, report.failures
    assert any(e["bars"] == len(rows) for e in gw.journal.matching(kind="historical"))  # all were served

    con = queries.connect(tmp_path / "data")
    kept = con.execute("SELECT ts, volume, wap, bar_count FROM bars ORDER BY ts").df()
    quarantined = con.execute("SELECT ts, reason FROM quarantine ORDER BY ts").df()
    assert night not in set(kept.ts), "a bar outside every session was stored"
    bad = {good[2], good[3], good[4], night}
    assert set(quarantined.ts) == {t.tz_convert(None) for t in bad}, quarantined  # the quarantine's: naive UTC
    assert quarantined.reason.str.len().min() > 0
    assert not bad & set(kept.ts)
    assert len(kept) == len(good) - 3
    sentinel = kept[kept.ts == good[5]].iloc[0]
    assert pd.isna(sentinel.volume) and pd.isna(sentinel.wap) and pd.isna(sentinel.bar_count)


@pytest.mark.parametrize(("rows", "culprit"), [("NVDA,2024-06-10,split,zero\n", "actions.csv:2: column value"),
                                               ("NOPE,2024-06-10,rename,NEW\n", "actions.csv:2: column symbol")])
def test_sim_refuses_a_bad_actions_file_in_one_line(tmp_path, rows, culprit):
    actions = tmp_path / "actions.csv"
    actions.write_text("symbol,ex_date,kind,value\n" + rows)
    result = CliRunner().invoke(main, ["sim", "--port", "0", "--actions", str(actions)])
    assert result.exit_code == Exit.BAD_INPUT, result.output
    assert culprit in result.output and "Traceback" not in result.output

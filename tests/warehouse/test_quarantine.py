"""The quarantine's book-keeping, pure: sightings, nights, giving up, healing, replays, holes in coverage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from harvester.model import SeriesKey
from harvester.warehouse.checks import DUPLICATE_TS, OUTSIDE_WINDOW
from harvester.warehouse.quarantine import Answer, apply_answers, held_bars, holes
from harvester.warehouse.tables import REJECTED_SCHEMA

SERIES = SeriesKey(7, "1 min", "TRADES", True)
OPEN = datetime(2024, 6, 10, 13, 30, tzinfo=UTC)
BAD_TS = datetime(2024, 6, 10, 14, 0)  # naive UTC, as stored
NIGHT = [datetime(2024, 6, d, 22, tzinfo=UTC) for d in (10, 11, 12, 13)]
LOCAL = datetime(2030, 1, 1)


def refused(ts: datetime | None = BAD_TS, reason: str = "low above high") -> dict:
    return {"symbol": "X", "con_id": 7, "ts": ts, "session_date": date(2024, 6, 10), "open": 10.0, "high": 9.0,
            "low": 9.5, "close": 10.0, "volume": 5.0, "wap": 10.0, "bar_count": 1, "reason": reason}


def answer(n: int, seen: datetime, rows: list[dict], start: datetime = OPEN, hours: float = 6.5) -> Answer:
    return Answer(f"run-b000001/{n:08d}", SERIES, start, start + timedelta(hours=hours), seen, rows)


def run(rows: list[dict], *answers: Answer, nights: int = 3) -> list[dict]:
    after = apply_answers(rows, answers, nights, LOCAL)
    return rows if after is None else after


def test_first_sighting_then_a_bad_night_then_healed():
    rows = run([], answer(1, NIGHT[0], [refused()]))
    (row,) = rows
    assert (row["first_seen"], row["last_seen"], row["nights"]) == (NIGHT[0].replace(tzinfo=None),) * 2 + (1,)
    assert row["resolved_at"] is None and not row["given_up"] and row["quarantined_at"] == LOCAL
    assert held_bars(rows)[SERIES][0].start == BAD_TS.replace(tzinfo=UTC)
    rows = run(rows, answer(2, NIGHT[1], [refused()]))
    assert rows[0]["nights"] == 2 and rows[0]["last_seen"] == NIGHT[1].replace(tzinfo=None)
    rows = run(rows, answer(3, NIGHT[2], []))
    assert rows[0]["resolved_at"] == NIGHT[2].replace(tzinfo=None) and rows[0]["nights"] == 2
    assert held_bars(rows) == {}


def test_given_up_after_the_set_number_of_nights_and_the_same_night_counts_once():
    rows = run([], answer(1, NIGHT[0], [refused()]), answer(2, NIGHT[0], [refused()]), nights=2)
    assert rows[0]["nights"] == 1 and not rows[0]["given_up"]
    rows = run(rows, answer(3, NIGHT[1], [refused()]), nights=2)
    assert rows[0]["given_up"] and held_bars(rows)[SERIES][0].given_up


def test_a_replayed_commit_changes_nothing():
    answers = [answer(1, NIGHT[0], [refused()]), answer(2, NIGHT[1], [refused()]), answer(3, NIGHT[2], [])]
    rows = run([], *answers)
    assert apply_answers(rows, answers, 3, LOCAL) is None


def test_an_answer_not_covering_the_time_does_not_heal_it():
    rows = run([], answer(1, NIGHT[0], [refused()]))
    assert apply_answers(rows, [answer(2, NIGHT[1], [], start=OPEN + timedelta(days=1))], 3, LOCAL) is None


def test_rows_that_leave_nothing_missing_are_resolved_at_once():
    rows = run([], answer(1, NIGHT[0], [refused(reason=DUPLICATE_TS), refused(BAD_TS + timedelta(minutes=1),
                                                                               OUTSIDE_WINDOW)]))
    assert all(r["resolved_at"] == NIGHT[0].replace(tzinfo=None) for r in rows) and held_bars(rows) == {}
    both = run([], answer(1, NIGHT[0], [refused(), refused(reason=DUPLICATE_TS)]))  # a bad bar and its repeat
    assert [r["resolved_at"] for r in both] == [None]


def test_bad_again_after_healing_starts_over():
    rows = run([], answer(1, NIGHT[0], [refused()]), answer(2, NIGHT[1], []), answer(3, NIGHT[2], [refused()]))
    (row,) = rows
    assert row["resolved_at"] is None and row["nights"] == 1 and row["first_seen"] == NIGHT[0].replace(tzinfo=None)


def test_a_row_from_before_healing_existed_is_held_and_due():
    legacy = {**refused(), "bar_size": "1 min", "what_to_show": "TRADES", "use_rth": True, "quarantined_at": LOCAL,
              "first_seen": None, "last_seen": None, "nights": None, "resolved_at": None, "given_up": None,
              "last_answer": None}
    (held,) = held_bars([legacy])[SERIES]
    assert held.last_seen is None and not held.given_up
    assert run([legacy], answer(1, NIGHT[0], []))[0]["resolved_at"] == NIGHT[0].replace(tzinfo=None)


def test_holes_are_the_bars_own_time_and_a_second_for_daily_bars():
    table = pa.Table.from_pylist([refused(), refused(BAD_TS, DUPLICATE_TS), refused(None, "missing ts or session_date")],
                                 schema=REJECTED_SCHEMA)
    start = BAD_TS.replace(tzinfo=UTC)
    assert holes(table, "1 min") == [(start, start + timedelta(minutes=1))]
    assert holes(table, "1 day") == [(start, start + timedelta(seconds=1))]
    assert holes(None, "1 min") == []

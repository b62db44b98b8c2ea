"""Quarantine: bars refused at the door are missing, not covered, until a clean answer replaces them.

A refused bar leaves a hole in its answer's coverage (its own time; for daily and longer bars the first
second of it, enough to break the span: the planner asks for whole sessions anyway), so `gaps` and
`harvest status` count it and the planner asks for it again, once a night. The `quarantine` table keeps one
row per refused bar (series, ts): the values last refused, when it was first and last seen (the gateway's
clock), on how many nights it came back bad, and when a clean answer covered its time (`resolved_at`).
After `quarantine_nights` bad nights it is given up: no longer asked for, still a gap.

Rows that leave nothing missing (a repeat of a kept bar's time, a bar outside the asked window, a row with
no time at all) are recorded as history and resolved at once; an answer without time never covers its
window in the first place (checks → coverage), so that window is refetched as a plain gap.

Every change is applied in fetch order at commit, after the bars and their coverage; each row remembers the
last staged answer applied to it, so a commit replayed after a crash changes nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from harvester.ibrules import bar_size
from harvester.model import HeldBar, Interval, SeriesKey
from harvester.warehouse.checks import DUPLICATE_TS, OUTSIDE_WINDOW
from harvester.warehouse.tables import QUARANTINE_KEY

LEAVES_NOTHING_MISSING = frozenset({DUPLICATE_TS, OUTSIDE_WINDOW})


@dataclass(frozen=True)
class Answer:
    """One committed answer as the quarantine sees it: its window and the rows refused from it."""

    answer_id: str  # staging's fetch-order id
    series: SeriesKey
    start: datetime  # UTC-aware, the request's window
    end: datetime
    seen_at: datetime  # the gateway's clock when it came
    rejected: list[dict]  # REJECTED_SCHEMA rows (naive UTC ts)


def hole_length(size: str) -> timedelta:
    """How much of a refused bar's time its answer does not cover."""
    bar = bar_size(size)
    return timedelta(seconds=bar.seconds if bar.intraday else 1)


def holds_time(row: dict) -> bool:
    """Whether a refused row leaves its time missing (a valid bar may belong there)."""
    return row["ts"] is not None and row["reason"] not in LEAVES_NOTHING_MISSING


def holes(rejected: pa.Table | None, size: str) -> list[Interval]:
    """The spans an answer's refused rows keep out of its coverage (UTC-aware)."""
    if rejected is None:
        return []
    length = hole_length(size)
    starts = {_aware(r["ts"]) for r in rejected.select(["ts", "reason"]).to_pylist() if holds_time(r)}
    return [(t, t + length) for t in sorted(starts)]


def apply_answers(rows: list[dict], answers: Iterable[Answer], give_up_after: int,
                  local_now: datetime) -> list[dict] | None:
    """The quarantine table after these answers (in fetch order), or None when nothing changed.

    A refused bar is sighted (first seen, or one more night when the gateway's clock moved on since it was
    last seen; given up at `give_up_after` nights); a still-missing bar whose time an answer covered
    without refusing it again is resolved.
    """
    book = {_key(r): dict(r) for r in rows}
    missing: dict[tuple, set[tuple]] = defaultdict(set)  # series → keys of bars still missing
    for key, row in book.items():
        if row["resolved_at"] is None and row["ts"] is not None:
            missing[key[:4]].add(key)
    changed = False
    for answer in answers:
        s = answer.series
        series = (s.con_id, s.bar_size, s.what_to_show, s.use_rth)
        seen = _naive(answer.seen_at)
        refused = _one_row_per_time(answer.rejected)
        for ts, refused_row in refused.items():
            key = (*series, ts)
            old = book.get(key)
            if old is not None and (old["last_answer"] or "") >= answer.answer_id:
                continue
            book[key] = row = _sighted(old, refused_row, series, answer.answer_id, seen, give_up_after, local_now)
            (missing[series].add if row["resolved_at"] is None and ts is not None else missing[series].discard)(key)
            changed = True
        start, end = _naive(answer.start), _naive(answer.end)
        for key in [k for k in missing[series] if start <= k[4] < end and k[4] not in refused]:
            row = book[key]
            if (row["last_answer"] or "") < answer.answer_id:
                row.update(resolved_at=seen, last_answer=answer.answer_id)
                missing[series].discard(key)
                changed = True
    return list(book.values()) if changed else None


def held_bars(rows: list[dict]) -> dict[SeriesKey, list[HeldBar]]:
    """The bars still missing, by series, as the planner takes them."""
    held: dict[SeriesKey, list[HeldBar]] = defaultdict(list)
    for r in rows:
        if r["resolved_at"] is not None or r["ts"] is None:
            continue
        start = _aware(r["ts"])
        held[SeriesKey(int(r["con_id"]), r["bar_size"], r["what_to_show"], bool(r["use_rth"]))].append(
            HeldBar(start, start + hole_length(r["bar_size"]),
                    _aware(r["last_seen"]) if r["last_seen"] is not None else None, bool(r["given_up"])))
    return {k: sorted(v, key=lambda h: h.start) for k, v in held.items()}


def _sighted(old: dict | None, refused: dict, series: tuple, answer_id: str, seen: datetime, give_up_after: int,
             local_now: datetime) -> dict:
    holds = holds_time(refused)
    if old is None or old["resolved_at"] is not None:  # first seen, or bad again after it healed
        nights = 1
    else:
        later = old["last_seen"] is None or seen > old["last_seen"]
        nights = (old["nights"] or 0) + (1 if later else 0)
    last_seen = seen if old is None or old["last_seen"] is None else max(old["last_seen"], seen)
    return {
        **refused, **dict(zip(QUARANTINE_KEY[1:4], series[1:4])),
        "quarantined_at": old["quarantined_at"] if old is not None and old["quarantined_at"] else local_now,
        "first_seen": old["first_seen"] if old is not None and old["first_seen"] else seen,
        "last_seen": last_seen, "nights": nights,
        "resolved_at": None if holds else seen,
        "given_up": holds and nights >= give_up_after,
        "last_answer": answer_id,
    }


def _one_row_per_time(rejected: list[dict]) -> dict[datetime | None, dict]:
    """The row that speaks for each refused time: one that leaves its time missing, if any does."""
    chosen: dict[datetime | None, dict] = {}
    for row in rejected:
        if row["ts"] not in chosen or (holds_time(row) and not holds_time(chosen[row["ts"]])):
            chosen[row["ts"]] = row
    return chosen


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in QUARANTINE_KEY)


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

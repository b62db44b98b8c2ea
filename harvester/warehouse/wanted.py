"""The span each series was asked for: what `gaps` and `harvest status` measure against.

Coverage says what was fetched; only the wanted span says what should have been (from `--start`, the head
timestamp or the horizon, to `--end` or the last closed session). A harvest records the span it plans for
each series before it sends anything, so an interrupted run still shows what it left missing. Stored as the
union per series: one row per merged span.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pandas as pd

from harvester.model import Interval, SeriesKey, merge_intervals

KEY = ["con_id", "bar_size", "what_to_show", "use_rth"]


def spans_of(rows: pd.DataFrame) -> dict[SeriesKey, list[Interval]]:
    """Stored rows (naive UTC) → merged UTC-aware spans per series."""
    spans: dict[SeriesKey, list[Interval]] = {}
    for r in rows.itertuples(index=False):
        key = SeriesKey(int(r.con_id), str(r.bar_size), str(r.what_to_show), bool(r.use_rth))
        spans.setdefault(key, []).append((_aware(r.start_ts), _aware(r.end_ts)))
    return {k: merge_intervals(v) for k, v in spans.items()}


def with_spans(rows: pd.DataFrame, fresh: Mapping[SeriesKey, Interval], now: datetime) -> pd.DataFrame | None:
    """The rows with `fresh` spans joined to their series' (touching spans merge); None when nothing changes."""
    before = spans_of(rows)
    after = dict(before)
    for key, span in fresh.items():
        after[key] = merge_intervals([*after.get(key, []), span])
    if after == before:
        return None
    recorded = now.astimezone(UTC).replace(tzinfo=None)
    return pd.DataFrame(
        [{"con_id": k.con_id, "bar_size": k.bar_size, "what_to_show": k.what_to_show, "use_rth": k.use_rth,
          "start_ts": a.astimezone(UTC).replace(tzinfo=None), "end_ts": b.astimezone(UTC).replace(tzinfo=None),
          "recorded_at": recorded} for k, spans in sorted(after.items()) for a, b in spans],
        columns=[*KEY, "start_ts", "end_ts", "recorded_at"])


def _aware(ts: pd.Timestamp | datetime) -> datetime:
    return pd.Timestamp(ts).tz_localize(UTC).to_pydatetime()

"""Crash safety: tests/helpers/crash.py SIGKILLs real `harvest` / `harvest compact` processes at seeded random points,
reruns them, and compares the warehouse with the fault-free reference. A few trials in the normal suite, the
full 50 under `-m slow`."""

from __future__ import annotations

import pytest

from tests.helpers import crash


def assert_all_clean(results, trials: int) -> None:
    assert len(results) == trials
    assert sum(t.killed for t in results) >= trials * 0.9, "too many runs ended before their kill point"
    for trial in results:
        assert trial.hazards == [], trial.hazards
        assert trial.rerun_exit == 0, trial.rerun_error  # 4 would be a stale lock refusing the rerun
        assert trial.diff.clean, (trial.point, trial.diff)


def test_sigkill_while_committing_staging_and_compacting_loses_and_duplicates_nothing(tmp_path):
    results = crash.run_trials(3, seed=7, work=tmp_path, phases=("commit", "stage", "compact"), echo=print)
    assert_all_clean(results, 3)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~8 s a trial: far beyond the suite's per-test default
def test_fifty_crash_trials_in_every_phase(tmp_path):
    results = crash.run_trials(50, seed=0, work=tmp_path, echo=print)
    assert_all_clean(results, 50)
    assert {t.phase for t in results} == set(crash.PHASES)

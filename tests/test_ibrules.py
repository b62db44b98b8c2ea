"""IB's rules as data: durations and step table, pacing limits, error classification."""

from __future__ import annotations

import pytest

from harvester.ibrules import (
    BAR_SIZES,
    PacingLimits,
    bar_size,
    check_duration,
    classify_error,
    legal_what_to_show,
    max_duration,
    parse_duration,
    request_weight,
    what_to_show_for,
)
from harvester.model import Outcome


def test_bar_size_lookup_and_aliases():
    assert bar_size("1W").ib_name == "1 week"
    assert bar_size("1 min").label == "1min"
    with pytest.raises(ValueError, match="unknown bar size '1 sec'"):
        bar_size("1 sec")


@pytest.mark.parametrize(
    ("bar", "duration"),
    [
        ("1 secs", "2000 S"),
        ("5 secs", "86400 S"),
        ("5 secs", "1 D"),
        ("1 min", "60 S"),
        ("1 min", "365 D"),
        ("1 min", "68 Y"),
        ("1 hour", "365 D"),
        ("4 hours", "52 W"),
        ("8 hours", "12 M"),
        ("1 day", "5 D"),
        ("1 day", "68 Y"),
        ("1 week", "10 Y"),
        ("1 month", "68 Y"),
        ("30 secs", "6 M"),
    ],
)
def test_accepted_durations(bar, duration):
    check_duration(bar, duration)  # raises for a duration IB refuses
    parsed = parse_duration(duration)
    assert 1 <= parsed.count <= max_duration(bar, parsed.unit)


@pytest.mark.parametrize(
    ("bar", "duration", "reason"),
    [
        ("1 secs", "2001 S", "too long"),
        ("1 secs", "1 D", "not allowed"),
        ("5 secs", "86401 S", "too long"),
        ("1 min", "366 D", "must be written in years"),
        ("1 day", "400 D", "must be written in years"),
        ("1 min", "53 W", "too long"),
        ("1 min", "13 M", "too long"),
        ("1 min", "69 Y", "too long"),
        ("2 mins", "60 S", "not allowed"),
        ("2 hours", "1 D", "not allowed"),
        ("8 hours", "1 W", "not allowed"),
        ("30 secs", "1 Y", "not allowed"),
        ("1 week", "52 W", "not allowed"),
        ("1 month", "12 M", "not allowed"),
        ("1 min", "0 D", "positive"),
        ("1 min", "1D", "bad duration"),
        ("1 min", "1 d", "bad duration"),
        ("1 min", "٣ D", "bad duration"),
    ],
)
def test_refused_durations(bar, duration, reason):
    with pytest.raises(ValueError, match=reason):
        check_duration(bar, duration)


def test_every_bar_size_has_a_legal_unit():
    for name in BAR_SIZES:
        assert any(max_duration(name, unit) for unit in "SDWMY"), name


def test_parse_duration_roundtrip():
    assert str(parse_duration("30 D")) == "30 D"


def test_pacing_limits_scale_time_not_counts():
    base = PacingLimits()
    fast = base.scaled(0.01)
    assert (fast.window_s, fast.identical_s, fast.same_contract_s) == pytest.approx((6.0, 0.15, 0.02))
    assert fast.safety_s == pytest.approx(base.safety_s * 0.01)
    assert (fast.max_weighted, fast.same_contract_max, fast.max_open) == (60, 5, 50)
    with pytest.raises(ValueError, match="positive"):
        base.scaled(0)


def test_bid_ask_weighs_two():
    assert request_weight("BID_ASK") == 2
    assert request_weight("TRADES") == request_weight("MIDPOINT") == 1


HMDS = "Historical Market Data Service error message:"


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (162, HMDS + "HMDS query returned no data: AAPL@SMART Trades", Outcome.EMPTY),
        (162, HMDS + "Historical data request pacing violation", Outcome.PACING),
        (162, HMDS + "No market data permissions for NYSE STK", Outcome.NO_PERMISSION),
        (354, "Requested market data is not subscribed.", Outcome.NO_PERMISSION),
        (10089, "Requested market data requires additional subscription", Outcome.NO_PERMISSION),
        (10168, "delayed market data is not enabled", Outcome.NO_PERMISSION),
        (10186, "not subscribed", Outcome.NO_PERMISSION),
        (10187, "Failed to request historical ticks", Outcome.NO_PERMISSION),
        (162, HMDS + "API historical data query cancelled: 7", Outcome.CANCELLED),
        (366, "No historical data query found for ticker id:7", Outcome.CANCELLED),
        (162, HMDS + "invalid step: 1", Outcome.INVALID),
        (321, "Error validating request.-'bS' : cause - durations longer than 365 days", Outcome.INVALID),
        (10314, "End Date/Time: The date, time, or time-zone entered is invalid.", Outcome.INVALID),
        (200, "No security definition has been found for the request", Outcome.UNKNOWN_CONTRACT),
        (322, "Only 50 simultaneous API historical data requests allowed.", Outcome.PACING),
        (1100, "Connectivity between IB and Trader Workstation has been lost.", Outcome.DISCONNECTED),
        (504, "Not connected", Outcome.DISCONNECTED),
        (166, "HMDS Expired Contract Violation", Outcome.ERROR),
        (162, HMDS + "Delayed market data query for ARCA STK", Outcome.ERROR),
    ],
)
def test_classify_error(code, text, outcome):
    assert classify_error(code, text) is outcome


@pytest.mark.parametrize("code", [2104, 2106, 2107, 2158, 2174, 2105, 10167, 165])
def test_warnings_are_not_outcomes(code):
    assert classify_error(code, "HMDS data farm connection is broken:ushmds") is None


@pytest.mark.parametrize("sec_type, default", [("STK", "TRADES"), ("IND", "TRADES"), ("FUT", "TRADES"),
                                               ("CASH", "MIDPOINT"), ("CFD", "MIDPOINT"), ("CMDTY", "MIDPOINT")])
def test_each_asset_class_has_a_default_what_to_show(sec_type, default):
    assert what_to_show_for(sec_type, None) == default == legal_what_to_show(sec_type)[0]


def test_what_an_asset_class_cannot_show_is_refused_naming_the_legal_ones():
    assert what_to_show_for("CASH", "BID_ASK") == "BID_ASK"
    with pytest.raises(ValueError, match="whatToShow TRADES is not served for CASH; legal: MIDPOINT, BID, ASK, BID_ASK"):
        what_to_show_for("CASH", "TRADES")
    with pytest.raises(ValueError, match="not served for IND; legal: TRADES$"):
        what_to_show_for("IND", "MIDPOINT")
    with pytest.raises(ValueError, match="not served for FUT"):
        what_to_show_for("FUT", "ADJUSTED_LAST")

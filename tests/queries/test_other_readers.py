"""Any Delta reader reads the warehouse as it is: Polars (`pl.scan_delta`) against the DuckDB views, locally
and on S3. Other engines (Spark, Trino, Databricks) read the same Delta protocol: README says how."""

from __future__ import annotations

import polars as pl
import pytest

import queries
from harvester.ibrules import BAR_SIZES
from harvester.warehouse.delta import DeltaTables
from harvester.warehouse.layout import BARS, COVERAGE, PARTITIONS
from harvester.warehouse.tables import BARS_TABLE_SCHEMA
from tests.helpers.reference import Span, reference_dir
from tests.helpers.s3 import S3Server, s3_server_fixture

s3 = s3_server_fixture()
SPAN = Span(("AAPL", "MSFT"))
KEY = ["con_id", "ts"]


def duckdb_rows(data) -> pl.DataFrame:
    con = queries.connect(data)
    return pl.from_arrow(con.sql("SELECT * EXCLUDE (bar_size) FROM bars ORDER BY con_id, ts").to_arrow_table())


def test_polars_scan_delta_reads_what_the_views_show() -> None:
    data = reference_dir(SPAN)
    scanned = pl.scan_delta(str(data / BARS)).filter(pl.col("symbol") == "MSFT").sort(KEY).collect()
    views = duckdb_rows(data).filter(pl.col("symbol") == "MSFT")
    assert scanned.height == views.height > 0
    assert scanned.drop("bar_size", "period").select(views.columns).equals(views)
    assert set(scanned["bar_size"]) == {BAR_SIZES[SPAN.bar_size].label}  # a partition label; the view shows "30 mins"
    assert pl.scan_delta(str(data / COVERAGE)).collect().height > 0


def test_polars_reads_an_s3_warehouse_with_the_same_settings(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    local = pl.scan_delta(str(reference_dir(SPAN) / BARS)).collect()
    loc = s3.location("polars/wh")
    DeltaTables(loc, PARTITIONS).transact(BARS, lambda _: (local.to_arrow(), None), BARS_TABLE_SCHEMA)
    remote = pl.scan_delta(loc.uri(BARS), storage_options=loc.storage_options).sort(KEY).collect()
    assert remote.select(local.columns).equals(local.sort(KEY))

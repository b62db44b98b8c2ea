"""Where a warehouse lives: URI parsing, AWS settings and the loopback-http rule (no server), then the
writability probe and a delta-rs round trip against a real S3 server (SeaweedFS on loopback, one a session).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import psutil
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable, write_deltalake

from harvester.warehouse.storage import (
    PROBE_DIR,
    Location,
    StorageError,
    check_writable,
    filesystem,
    fs_paths,
    resolve_s3,
)
from tests.helpers.s3 import S3Server, conditional_headers_dropped, free_ports, s3_server_fixture

s3 = s3_server_fixture()


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment of exactly `values`, with HOME in tmp so no real ~/.aws leaks in."""
    return {"HOME": str(tmp_path), **values}


# --- parsing ---------------------------------------------------------------------------------------------

def test_local_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for given in ("data", Path("data"), f"file://{tmp_path}/data", str(tmp_path / "data")):
        loc = Location.parse(given)
        assert loc.is_local and loc.root == str(tmp_path / "data") == str(loc)
        assert loc.uri("bars") == str(tmp_path / "data" / "bars") and loc.storage_options == {}


def test_s3_uri_parts(tmp_path: Path) -> None:
    loc = Location.parse("s3://lake/wh/prod/", environ=env(tmp_path))
    assert (loc.bucket, loc.prefix, str(loc), loc.is_local) == ("lake", "wh/prod", "s3://lake/wh/prod", False)
    assert loc.uri("bars") == "s3://lake/wh/prod/bars"
    assert loc.uri("bars", "bar_size=1min/year=2024") == "s3://lake/wh/prod/bars/bar_size=1min/year=2024"
    bare = Location.parse("s3://lake", environ=env(tmp_path))
    assert (bare.prefix, bare.uri("t"), bare.key("t")) == ("", "s3://lake/t", "t")


@pytest.mark.parametrize(("given", "says"), [
    ("s3://", "missing bucket"),
    ("s3:///wh", "missing bucket"),
    ("s3:/lake/wh", "malformed S3 URI"),
    ("s3://Lake_Bad/wh", "invalid bucket name 'Lake_Bad'"),
    ("s3://ab/wh", "invalid bucket name 'ab'"),
    ("s3://lake/a//b", "malformed path"),
    ("s3://lake/a/../b", "malformed path"),
    ("s3://lake/wh?versionId=1", "no query"),
    ("gs://lake/wh", "unsupported scheme 'gs'"),
    ("file://host/wh", "malformed file URI"),
    ("  ", "data_dir is empty"),
])
def test_malformed_locations_are_refused(tmp_path: Path, given: str, says: str) -> None:
    with pytest.raises(StorageError) as e:
        Location.parse(given, environ=env(tmp_path))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_uri_mangled_by_pathlib_is_refused_not_taken_for_a_folder() -> None:
    with pytest.raises(StorageError, match=r"^s3:/lake/wh: a URI that went through pathlib.Path"):
        Location.parse(Path("s3://lake/wh"))  # what click.Path(path_type=Path) hands over


def test_parts_cannot_escape_the_root(tmp_path: Path) -> None:
    for loc in (Location.parse(tmp_path), Location.parse("s3://lake/wh", environ=env(tmp_path))):
        for bad in ("../x", "a//b", "", "./t"):
            with pytest.raises(StorageError, match="malformed path"):
                loc.uri(bad)


# --- settings from the environment -----------------------------------------------------------------------

def test_endpoint_region_and_credentials_from_variables(tmp_path: Path) -> None:
    s3 = resolve_s3(env(tmp_path, AWS_ENDPOINT_URL="http://127.0.0.1:9000",
                        AWS_ENDPOINT_URL_S3="https://s3.lan", AWS_ACCESS_KEY_ID="AK",
                        AWS_SECRET_ACCESS_KEY="SK", AWS_SESSION_TOKEN="TOK"))
    assert (s3.endpoint, s3.endpoint_source) == ("https://s3.lan", "AWS_ENDPOINT_URL_S3")
    assert (s3.region, s3.access_key, s3.secret_key, s3.session_token) == ("us-east-1", "AK", "SK", "TOK")
    assert "SK" not in repr(s3) and "TOK" not in repr(s3)
    assert resolve_s3(env(tmp_path, AWS_DEFAULT_REGION="eu-west-1")).region == "eu-west-1"
    both = env(tmp_path, AWS_DEFAULT_REGION="eu-west-1", AWS_REGION="ap-south-1")
    assert resolve_s3(both).region == "ap-south-1"
    assert resolve_s3(env(tmp_path)).endpoint is None  # AWS itself


def test_storage_options_carry_everything_delta_rs_needs(tmp_path: Path) -> None:
    loc = Location.parse("s3://lake/wh", environ=env(tmp_path, AWS_ENDPOINT_URL="http://localhost:8333/",
                                                      AWS_ACCESS_KEY_ID="AK", AWS_SECRET_ACCESS_KEY="SK"))
    assert loc.storage_options == {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://localhost:8333", "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
    tls = Location.parse("s3://lake/wh", environ=env(tmp_path, AWS_ENDPOINT_URL="https://s3.lan"))
    assert tls.storage_options == {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "https://s3.lan"}


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "http://127.8.9.10", "http://[::1]:8333",
                                      "http://localhost:9000", "https://10.0.0.5:9000", "https://s3.lan"])
def test_http_only_to_loopback_is_allowed(tmp_path: Path, endpoint: str) -> None:
    assert resolve_s3(env(tmp_path, AWS_ENDPOINT_URL=endpoint)).endpoint == endpoint


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5:9000", "http://minio.lan", "http://0.0.0.0:9000",
                                      "http://127.0.0.1.nip.io", "http://[::ffff:10.0.0.1]"])
def test_http_elsewhere_is_refused_naming_the_variable(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(StorageError, match=r"^AWS_ENDPOINT_URL_S3=.*plain http is allowed only to loopback"):
        resolve_s3(env(tmp_path, AWS_ENDPOINT_URL_S3=endpoint))


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1", "127.0.0.1:9000", "http://127.0.0.1:99999",
                                      "http://127.0.0.1:9000/bucket", "http://user:pw@127.0.0.1"])
def test_malformed_endpoints_are_refused(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(StorageError, match=r"^AWS_ENDPOINT_URL=.*malformed"):
        resolve_s3(env(tmp_path, AWS_ENDPOINT_URL=endpoint))


def test_half_a_key_pair_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY is not set"):
        resolve_s3(env(tmp_path, AWS_ACCESS_KEY_ID="AK"))


def test_profiles_from_aws_files(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n"
        "[ci]\naws_access_key_id = CI\naws_secret_access_key = cisecret\n")
    (tmp_path / ".aws" / "config").write_text(
        "[default]\nregion = eu-north-1\n"
        "[profile ci]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:8333\n")
    default = resolve_s3(env(tmp_path))
    assert (default.access_key, default.region, default.credentials_source) == ("DEF", "eu-north-1",
                                                                                "profile default")
    ci = resolve_s3(env(tmp_path, AWS_PROFILE="ci"))
    assert (ci.access_key, ci.secret_key, ci.region) == ("CI", "cisecret", "eu-west-3")
    assert (ci.endpoint, ci.endpoint_source) == ("http://127.0.0.1:8333", "endpoint_url in profile ci")
    variables_win = env(tmp_path, AWS_PROFILE="ci", AWS_ACCESS_KEY_ID="ENV",
                        AWS_SECRET_ACCESS_KEY="envsecret", AWS_REGION="us-west-2",
                        AWS_ENDPOINT_URL="https://s3.lan")
    mixed = resolve_s3(variables_win)
    assert (mixed.access_key, mixed.region, mixed.endpoint) == ("ENV", "us-west-2", "https://s3.lan")
    with pytest.raises(StorageError, match="AWS_PROFILE='nope': no such profile"):
        resolve_s3(env(tmp_path, AWS_PROFILE="nope"))


# --- the probe's decisions, and local folders ------------------------------------------------------------

class Store:
    """Answers the probe like a store that ignores If-None-Match (or rejects it), and records the calls."""

    def __init__(self, second_put: tuple[int, str]) -> None:
        self.second_put, self.calls, self.puts = second_put, [], 0

    def __call__(self, method: str, key: str, headers: Mapping[str, str], body: bytes,
                 query: Mapping[str, str]) -> tuple[int, str]:
        self.calls.append((method, key, dict(headers)))
        if method == "PUT":
            self.puts += 1
            return (200, "") if self.puts == 1 else self.second_put
        return (204, "") if method == "DELETE" else (200, "")


@pytest.mark.parametrize("second_put", [(200, ""), (501, "NotImplemented"), (400, "NotImplemented")])
def test_a_store_ignoring_conditional_puts_is_refused(tmp_path: Path, second_put: tuple[int, str]) -> None:
    loc = Location.parse("s3://lake/wh", environ=env(tmp_path, AWS_ENDPOINT_URL="https://s3.lan"))
    store = Store(second_put)
    with pytest.raises(StorageError, match=r"does not honour conditional writes \(If-None-Match\); several"):
        check_writable(loc, request=store)
    (_, put1, h1), (_, put2, h2), (method, deleted, _) = store.calls[1:]
    assert put1 == put2 == deleted and put1.startswith(f"wh/{PROBE_DIR}/probe-") and method == "DELETE"
    assert h1 == h2 == {"If-None-Match": "*"}


def test_local_folder_is_created_and_probed(tmp_path: Path) -> None:
    loc = Location.parse(tmp_path / "new" / "wh")
    check_writable(loc)
    assert Path(loc.root).is_dir() and list(Path(loc.root).iterdir()) == []
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StorageError, match=f"^{tmp_path}/file/wh: warehouse folder not writable"):
        check_writable(Location.parse(tmp_path / "file" / "wh"))


def test_fs_paths() -> None:
    assert fs_paths(["s3://lake/wh/t/a.parquet", "file:///d/t/b.parquet", "/d/t/c.parquet"]) == [
        "lake/wh/t/a.parquet", "/d/t/b.parquet", "/d/t/c.parquet"]


# --- against a real S3 server ----------------------------------------------------------------------------

def test_server_listens_on_loopback_only(s3: S3Server) -> None:
    listening = [c.laddr.ip for c in psutil.Process(s3.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and set(listening) == {"127.0.0.1"}


def test_check_writable_passes_and_leaves_no_probe(s3: S3Server) -> None:
    loc = s3.location("probe-ok")
    check_writable(loc)
    fs, root = filesystem(loc)
    probes = pafs.FileSelector(f"{root}/{PROBE_DIR}", allow_not_found=True, recursive=True)
    assert fs.get_file_info(probes) == []


def test_wrong_secret_names_the_credentials(s3: S3Server) -> None:
    with pytest.raises(StorageError, match="credentials rejected .* AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"):
        check_writable(s3.location("wh", AWS_SECRET_ACCESS_KEY="not-the-secret"))
    with pytest.raises(StorageError, match="credentials rejected .*InvalidAccessKeyId"):
        check_writable(s3.location("wh", AWS_ACCESS_KEY_ID="nobody"))


def test_unknown_bucket_is_named(s3: S3Server) -> None:
    loc = Location.parse("s3://no-such-bucket/wh", environ=s3.env())
    with pytest.raises(StorageError, match=f"bucket 'no-such-bucket' does not exist at {s3.endpoint}"):
        check_writable(loc)


def test_unreachable_endpoint_is_named(s3: S3Server) -> None:
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    with pytest.raises(StorageError, match=f"S3 endpoint {endpoint} .AWS_ENDPOINT_URL. unreachable"):
        check_writable(s3.location("wh", AWS_ENDPOINT_URL=endpoint), timeout=1.0)


def test_real_store_behind_a_proxy_dropping_if_none_match_is_refused(s3: S3Server) -> None:
    with (conditional_headers_dropped(s3.endpoint) as proxy,
          pytest.raises(StorageError, match=f"{proxy} .* does not honour conditional writes")):
        check_writable(s3.location("wh", AWS_ENDPOINT_URL=proxy))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_delta_round_trip_read_through_filesystem_into_duckdb(where: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    if where == "local":
        loc = Location.parse(tmp_path / "wh")
    else:
        loc = request.getfixturevalue("s3").location(f"roundtrip-{tmp_path.name}")
    check_writable(loc)
    t0 = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
    rows = [pa.table({"symbol": [s] * 3, "ts": [t0 + timedelta(minutes=i) for i in range(3)],
                      "close": [100.0 + i for i in range(3)], "year": [2024] * 3}) for s in ("AAPL", "MSFT")]
    for part in rows:  # two commits, so the file list comes from the log, not from one write
        write_deltalake(loc.uri("t"), part, partition_by=["year"], mode="append",
                        storage_options=loc.storage_options)
    files = DeltaTable(loc.uri("t"), storage_options=loc.storage_options).file_uris()
    fs, root = filesystem(loc)
    assert len(files) == 2 and all(path.startswith(f"{root}/t/year=2024/") for path in fs_paths(files))
    con = duckdb.connect()
    con.register("t", ds.dataset(fs_paths(files), filesystem=fs, format="parquet"))
    got = con.sql("SELECT symbol, ts, close FROM t ORDER BY symbol, ts").to_arrow_table()
    want = pa.concat_tables(rows).select(["symbol", "ts", "close"])
    assert got.cast(want.schema).equals(want)

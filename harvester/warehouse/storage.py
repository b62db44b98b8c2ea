"""Where a warehouse lives: a local folder or an S3 prefix, and the check a writer makes before using it.

Endpoint and credentials follow the AWS conventions (environment first, then the `~/.aws` profile), so one
set of settings serves the AWS CLI, delta-rs and us. Plain http is allowed only to loopback, where nobody
else can see the traffic. delta-rs commits version N by a PUT-if-absent of `_delta_log/N.json`; a store that
ignores `If-None-Match` lets two writers both win version N and the log is silently corrupt, so
`check_writable` proves the store refuses a second PUT-if-absent before anyone writes. docs/object-storage.md.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import http.client
import ipaddress
import os
import re
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlsplit

import pyarrow.fs as pafs

DEFAULT_REGION = "us-east-1"
PROBE_DIR = "_harvest"  # the probe's key is <prefix>/_harvest/probe-<uuid>, deleted after
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}

# (method, key, extra headers, body, query) -> (HTTP status, S3 error code or ""): the probe's door to S3.
Request = Callable[[str, str, Mapping[str, str], bytes, Mapping[str, str]], tuple[int, str]]


class StorageError(ValueError):
    """The warehouse location is unusable; the one-line message names the URI, variable or endpoint."""


@dataclass(frozen=True)
class S3Settings:
    """Endpoint, region and credentials of an S3 location, resolved once so every client sees the same."""

    region: str = DEFAULT_REGION
    endpoint: str | None = None  # None: AWS itself
    endpoint_source: str = ""  # the variable or profile it came from, for messages
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    credentials_source: str = ""
    ca_bundle: str | None = None  # AWS_CA_BUNDLE, for https endpoints with a private CA

    @property
    def endpoint_label(self) -> str:
        return f"{self.endpoint} ({self.endpoint_source})" if self.endpoint else f"AWS S3 ({self.region})"


@dataclass(frozen=True)
class Location:
    """A warehouse root: an absolute local folder, or `s3://bucket/prefix` with its S3 settings."""

    root: str
    bucket: str = ""
    prefix: str = ""
    s3: S3Settings | None = None

    @classmethod
    def parse(cls, data_dir: str | Path | Location, environ: Mapping[str, str] | None = None) -> Location:
        """`data_dir` as settings give it; S3 settings come from `environ` (default: os.environ)."""
        if isinstance(data_dir, Location):
            return data_dir
        text = str(data_dir)
        if not text.strip():
            raise StorageError("data_dir is empty")
        parts = urlsplit(text)
        if isinstance(data_dir, Path) and text.startswith(("s3:/", "file:/")):
            raise StorageError(f"{text}: a URI that went through pathlib.Path, which collapses '//'; "
                               "pass data_dir as a str")
        if isinstance(data_dir, Path) or len(parts.scheme) <= 1:  # a plain path (one letter: a Windows drive)
            return cls(root=str(Path(text).expanduser().absolute()))
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
                raise StorageError(f"{text}: malformed file URI (expected file:///absolute/path)")
            return cls(root=str(Path(parts.path).absolute()))
        if parts.scheme != "s3":
            raise StorageError(f"{text}: unsupported scheme {parts.scheme!r}; use a path or s3://bucket/…")
        bucket, prefix = _parse_s3(text)
        return cls(f"s3://{bucket}/{prefix}".rstrip("/"), bucket, prefix, resolve_s3(environ))

    @property
    def is_local(self) -> bool:
        return self.s3 is None

    def key(self, *parts: str) -> str:
        """The object key (S3) or relative path of `parts` inside the root."""
        return "/".join(([self.prefix] if self.prefix else []) + [s for p in parts for s in _segments(p, p)])

    def uri(self, *parts: str) -> str:
        """Where a table or file lives, as deltalake, pyarrow and DuckDB take it: `loc.uri("bars")`."""
        if self.is_local:
            return str(Path(self.root, *(s for p in parts for s in _segments(p, p))))
        return f"s3://{self.bucket}/{self.key(*parts)}".rstrip("/")

    @property
    def storage_options(self) -> dict[str, str]:
        """deltalake's `storage_options=`, explicit so delta-rs and the probe talk to the same store."""
        s3 = self.s3
        if s3 is None:
            return {}
        options = {"AWS_REGION": s3.region}
        if s3.endpoint:
            options["AWS_ENDPOINT_URL"] = s3.endpoint
            if s3.endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if s3.access_key and s3.secret_key:
            options.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)
            if s3.session_token:
                options["AWS_SESSION_TOKEN"] = s3.session_token
        return options

    def __str__(self) -> str:
        return self.root


def _segments(part: str, where: str) -> list[str]:
    """Path segments of `part`; refuses empty, `.` and `..` ones so no key escapes or aliases the root."""
    segments = part.split("/")
    if any(seg in ("", ".", "..") or "\\" in seg for seg in segments):
        raise StorageError(f"{where!r}: malformed path (empty, '.' or '..' segment)")
    return segments


def _parse_s3(text: str) -> tuple[str, str]:
    if not text.startswith("s3://"):
        raise StorageError(f"{text}: malformed S3 URI (expected s3://bucket/prefix)")
    parts = urlsplit(text)
    if "?" in text or "#" in text:
        raise StorageError(f"{text}: malformed S3 URI (no query or fragment allowed)")
    if not parts.netloc:
        raise StorageError(f"{text}: missing bucket (expected s3://bucket/prefix)")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise StorageError(f"{text}: invalid bucket name {parts.netloc!r} (3-63 of a-z 0-9 . -)")
    prefix = parts.path.strip("/")
    if prefix:
        _segments(prefix, text)
    return parts.netloc, prefix


def resolve_s3(environ: Mapping[str, str] | None = None) -> S3Settings:
    """AWS_* variables first, then the profile (AWS_PROFILE or `default`) of ~/.aws/credentials and config."""
    env = os.environ if environ is None else environ
    name = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or ""
    profile = _profile(env, name or "default", required=bool(name))
    where = f"profile {name or 'default'}"
    var = next((v for v in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") if env.get(v)), None)
    endpoint, source = (env[var], var) if var else (profile.get("endpoint_url"), f"endpoint_url in {where}")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or profile.get("region") or DEFAULT_REGION
    key, secret, creds = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"), "environment"
    token = env.get("AWS_SESSION_TOKEN")
    if not (key or secret):
        key, secret = profile.get("aws_access_key_id"), profile.get("aws_secret_access_key")
        token, creds = profile.get("aws_session_token"), where
    if bool(key) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if key else "AWS_ACCESS_KEY_ID"
        raise StorageError(f"{missing} is not set but its partner is ({creds})")
    return S3Settings(region=region, endpoint=check_endpoint(endpoint, source) if endpoint else None,
                      endpoint_source=source if endpoint else "", access_key=key or None,
                      secret_key=secret or None, session_token=token or None,
                      credentials_source=creds if key else "", ca_bundle=env.get("AWS_CA_BUNDLE") or None)


def check_endpoint(endpoint: str, variable: str) -> str:
    """https anywhere; plain http only to 127.0.0.0/8, ::1 or localhost, where no one else sees traffic."""
    parts = urlsplit(endpoint.strip())
    malformed = StorageError(f"{variable}={endpoint!r}: malformed endpoint (expected http(s)://host[:port])")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.username:
        raise malformed
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise malformed from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise StorageError(f"{variable}={endpoint!r}: plain http is allowed only to loopback; use https")
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _profile(env: Mapping[str, str], name: str, *, required: bool) -> dict[str, str]:
    """The profile merged from the config file (`[profile x]`) and the credentials file (`[x]`, which wins).

    Static keys, session token, region and endpoint_url only: no SSO, role assumption or credential_process.
    """
    aws = Path(env.get("HOME") or Path.home()) / ".aws"
    files = [(Path(env.get("AWS_CONFIG_FILE") or aws / "config"), "default" if name == "default" else
              f"profile {name}"), (Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or aws / "credentials"), name)]
    merged: dict[str, str] = {}
    found = False
    for path, section in files:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as e:
            raise StorageError(f"{path}: unreadable AWS profile file ({type(e).__name__})") from None
        if parser.has_section(section):
            found = True
            merged.update({k: v.strip() for k, v in parser.items(section)})
    if required and not found:
        raise StorageError(f"AWS_PROFILE={name!r}: no such profile in {files[0][0]} or {files[1][0]}")
    return merged


def signed_request(s3: S3Settings, bucket: str, method: str, key: str,
                   headers: Mapping[str, str] | None = None, body: bytes = b"",
                   query: Mapping[str, str] | None = None, *, timeout: float = 5.0) -> tuple[int, str]:
    """One SigV4-signed path-style request, stdlib only (pyarrow's S3 client cannot send If-None-Match).

    Signs host and x-amz-* headers, as S3 requires; extra headers such as If-None-Match go unsigned.
    """
    assert s3.access_key and s3.secret_key
    parts = urlsplit(s3.endpoint or f"https://s3.{s3.region}.amazonaws.com")
    path = quote(f"/{bucket}/{key}" if key else f"/{bucket}", safe="/-_.~")
    enc = partial(quote, safe="-_.~")
    params = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted((query or {}).items()))
    stamp, payload = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"), hashlib.sha256(body).hexdigest()
    signed = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    if s3.session_token:
        signed["x-amz-security-token"] = s3.session_token
    names = ";".join(sorted(signed))
    canonical = "\n".join([method, path, params, *(f"{k}:{v}" for k, v in sorted(signed.items())), "", names,
                           payload])
    scope = f"{stamp[:8]}/{s3.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = ("AWS4" + s3.secret_key).encode()
    for step in (stamp[:8], s3.region, "s3", "aws4_request"):
        k = hmac.new(k, step.encode(), hashlib.sha256).digest()
    auth = (f"AWS4-HMAC-SHA256 Credential={s3.access_key}/{scope}, SignedHeaders={names}, "
            f"Signature={hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()}")
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=s3.ca_bundle)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, f"{path}?{params}" if params else path, body=body,
                     headers={**signed, **(headers or {}), "Authorization": auth})
        response = conn.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")
    except OSError as e:  # refused, DNS, timeout, TLS
        raise StorageError(f"S3 endpoint {s3.endpoint_label} unreachable: {e.strerror or e}") from None
    finally:
        conn.close()
    code = re.search(r"<Code>([^<]+)</Code>", text)
    return response.status, code.group(1) if code else ""


def check_writable(loc: Location, *, timeout: float = 5.0, request: Request | None = None) -> None:
    """Probe once before writing: the store answers, the bucket exists, the credentials may list and write,
    and a second PUT-if-absent of one key is refused (412). `request` replaces the HTTP door in tests."""
    s3 = loc.s3
    if s3 is None:
        return _check_local(Path(loc.root))
    if request is None:
        if not s3.access_key:
            raise StorageError(f"{loc}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                               "or AWS_PROFILE")
        request = partial(signed_request, s3, loc.bucket, timeout=timeout)
    listing = {"list-type": "2", "max-keys": "1", "prefix": loc.key(PROBE_DIR)}
    status, code = request("GET", "", {}, b"", listing)
    if status != 200:  # before any PUT: some stores create a missing bucket on upload
        raise _refusal(loc, status, code, "listing the bucket")
    key, if_absent = loc.key(PROBE_DIR, f"probe-{uuid.uuid4()}"), {"If-None-Match": "*"}
    status, code = request("PUT", key, if_absent, b"probe", {})
    if status >= 300:
        raise _refusal(loc, status, code, "the probe PUT")
    try:
        status, code = request("PUT", key, if_absent, b"probe again", {})
        if status < 300 or status == 501 or code == "NotImplemented":
            raise StorageError(f"{loc}: {s3.endpoint_label} does not honour conditional writes "
                               "(If-None-Match); several writers would corrupt the Delta log; "
                               "refusing to write")
        if status != 412:
            raise _refusal(loc, status, code, "the second conditional PUT")
    finally:
        try:
            request("DELETE", key, {}, b"", {})
        except StorageError:
            pass  # a probe left under _harvest/ is harmless; the error that brought us here matters more


def _refusal(loc: Location, status: int, code: str, what: str) -> StorageError:
    s3 = loc.s3
    assert s3 is not None
    if code == "NoSuchBucket" or (status == 404 and not code):
        return StorageError(f"{loc}: bucket {loc.bucket!r} does not exist at {s3.endpoint_label}")
    if code in _BAD_CREDENTIALS:
        return StorageError(f"{loc}: credentials rejected by {s3.endpoint_label} ({code}); check "
                            f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ({s3.credentials_source})")
    if status == 403:
        return StorageError(f"{loc}: credentials of {s3.access_key} ({s3.credentials_source}) are refused "
                            f"{what} ({code or 'AccessDenied'})")
    if code in _WRONG_REGION:
        return StorageError(f"{loc}: bucket {loc.bucket!r} is not in {s3.region} ({code}); set AWS_REGION")
    return StorageError(f"{loc}: {s3.endpoint_label} answered {status} {code or ''} to {what}")


def _check_local(root: Path) -> None:
    """The folder exists or can be made, and a file can be created in it (hidden: no reader glob matches)."""
    probe = root / f".harvest-probe-{uuid.uuid4()}"
    if root.exists() and not root.is_dir():
        raise StorageError(f"data directory {root} is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as e:
        raise StorageError(f"{root}: warehouse folder not writable ({e.strerror or e})") from None


def filesystem(loc: Location, *, connect_timeout: float = 5.0,
               request_timeout: float = 60.0) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem reading the files delta-rs wrote, and the root's path inside it.

    Hand DuckDB `pyarrow.dataset.dataset(fs_paths(table.file_uris(...)), filesystem=fs)`: DuckDB 2.0 has no
    httpfs offline, and fsspec filesystems registered in DuckDB read S3 files wrong (docs/object-storage.md).
    """
    s3 = loc.s3
    if s3 is None:
        return pafs.LocalFileSystem(), loc.root
    kwargs: dict = {"region": s3.region, "connect_timeout": connect_timeout,
                    "request_timeout": request_timeout}
    if s3.access_key:
        kwargs.update(access_key=s3.access_key, secret_key=s3.secret_key, session_token=s3.session_token)
    if s3.endpoint:
        kwargs.update(endpoint_override=urlsplit(s3.endpoint).netloc, scheme=urlsplit(s3.endpoint).scheme)
    if s3.ca_bundle:
        kwargs["tls_ca_file_path"] = s3.ca_bundle
    return pafs.S3FileSystem(**kwargs), f"{loc.bucket}/{loc.prefix}".rstrip("/")


def fs_paths(uris: Iterable[str]) -> list[str]:
    """`DeltaTable.file_uris()` as paths for `filesystem()`: s3://bucket/key → bucket/key, file:// dropped."""
    return [u[5:] if u.startswith("s3://") else urlsplit(u).path if u.startswith("file:") else u
            for u in uris]

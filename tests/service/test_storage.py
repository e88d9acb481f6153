"""Storage backends: the local data dir, and S3 against a real SeaweedFS server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from core.storage import LocalStorage, S3Storage, StorageError, check_key, make_storage


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/../b", "", "a b"])
def test_bad_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        check_key(key)


def test_local_roundtrip_and_atomic_writer(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "data")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    assert store.put_file("results/j/sample_0.mp4", src, content_type="video/mp4") == 3_000_000
    assert store.size("results/j/sample_0.mp4") == 3_000_000
    assert store.local_path("results/j/sample_0.mp4") is not None
    out = tmp_path / "out.bin"
    store.download("results/j/sample_0.mp4", out)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(RuntimeError), store.writer("uploads/u/input.mp4",
                                                   content_type="video/mp4") as fh:
        fh.write(b"partial")
        raise RuntimeError("client went away")
    assert store.size("uploads/u/input.mp4") is None
    assert list((tmp_path / "data" / "uploads" / "u").iterdir()) == []  # no temp left behind
    store.delete("results/j/sample_0.mp4")
    assert store.size("results/j/sample_0.mp4") is None
    with pytest.raises(StorageError, match="not found"):
        store.download("results/j/sample_0.mp4", out)


def test_s3_roundtrip_and_presigned_url(s3_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(storage_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket="mmd",
                        s3_access_key_id="test", s3_secret_access_key="test", s3_prefix="/dev/",
                        s3_presign_expiry_s=120)
    store = make_storage(settings)
    assert isinstance(store, S3Storage) and store.prefix == "dev"
    src = tmp_path / "clip.mp4"
    payload = bytes(range(256)) * 12_000  # ~3 MB: spills the spool to disk, multipart-free
    src.write_bytes(payload)
    assert store.put_file("results/j1/sample_0.mp4", src, content_type="video/mp4") == len(payload)
    assert store.size("results/j1/sample_0.mp4") == len(payload)
    assert store.size("results/none.mp4") is None
    out = tmp_path / "back.mp4"
    store.download("results/j1/sample_0.mp4", out)
    assert out.read_bytes() == payload
    url = store.presigned_url("results/j1/sample_0.mp4", filename="j1.mp4",
                              content_type="video/mp4")
    assert url is not None and "/mmd/dev/results/j1/sample_0.mp4" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == payload
    assert r.headers["content-type"] == "video/mp4"
    store.delete("results/j1/sample_0.mp4")
    assert store.size("results/j1/sample_0.mp4") is None
    with pytest.raises(StorageError):
        store.download("results/j1/sample_0.mp4", out)


def test_presigned_urls_use_the_public_endpoint(s3_endpoint: str, tmp_path: Path) -> None:
    """Compose: the services reach S3 as http://s3:8333, users as http://localhost:8333. The
    presigned URL must name (and be signed for) the public host, and work from there."""
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    assert public != s3_endpoint
    settings = Settings(storage_backend="s3", s3_endpoint_url=s3_endpoint,
                        s3_public_endpoint_url=public, s3_bucket="mmd",
                        s3_access_key_id="test", s3_secret_access_key="test")
    store = make_storage(settings)
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"\x00mp4" * 1000)
    store.put_file("results/j2/sample_0.mp4", src, content_type="video/mp4")
    url = store.presigned_url("results/j2/sample_0.mp4", filename="j2.mp4",
                              content_type="video/mp4")
    assert url is not None and url.startswith(public + "/mmd/results/j2/sample_0.mp4")
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == src.read_bytes()
    store.delete("results/j2/sample_0.mp4")

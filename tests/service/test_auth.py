"""API keys: 401 without a valid key, jobs and uploads owned by their key (another key's job
is a 404 exactly like an unknown id), unguessable ids, hashed key configuration."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from core.contract import JobResult, SampleFile
from core.keys import hash_key, parse_key_entry
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore, result_key
from service.app import create_app
from service.auth import Authenticator, load_keys
from service.submit import new_id
from tests.helpers.auth import JOB_BODY, KEY_A, KEY_B, bearer, keyed_client
from tests.helpers.media import write_clip


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return keyed_client(settings)


def test_missing_or_wrong_key_is_401_with_www_authenticate(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("not-a-key"),
                    {"Authorization": "Bearer"}, bearer(KEY_A + "x")):
        r = client.post("/generate", json=JOB_BODY, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in r.json()["detail"]
    assert client.get("/jobs/whatever").status_code == 401
    assert client.post("/uploads", files={"file": ("a.wav", b"x")}).status_code == 401
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_key_isolation_other_keys_job_is_404(client: TestClient, settings: Settings,
                                             redis_conn: Redis, tmp_path: Path) -> None:
    r = client.post("/generate", json=JOB_BODY, headers=bearer(KEY_A))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    # play the worker: a finished job with a result file
    store = JobStore(redis_conn, settings)
    storage = LocalStorage(settings.data_dir)
    with storage.writer(result_key(job_id, 0), content_type="video/mp4") as fh:
        fh.write(b"mp4 bytes")
    assert store.claim(job_id)
    store.succeed(job_id, JobResult(
        url=f"/jobs/{job_id}/result", bytes=9, duration_s=1.6, sha256="0" * 64,
        random_weights=True, model="default", width=64, height=64, fps=10, sample_rate=16000,
        samples=[SampleFile(url=f"/jobs/{job_id}/result", bytes=9, sha256="0" * 64)]))
    assert client.get(f"/jobs/{job_id}", headers=bearer(KEY_A)).status_code == 200
    assert client.get(f"/jobs/{job_id}/result", headers=bearer(KEY_A)).content == b"mp4 bytes"
    unknown = client.get("/jobs/" + new_id(), headers=bearer(KEY_B))
    for method, path in [("GET", f"/jobs/{job_id}"), ("GET", f"/jobs/{job_id}/result"),
                         ("POST", f"/jobs/{job_id}/cancel"), ("DELETE", f"/jobs/{job_id}")]:
        r = client.request(method, path, headers=bearer(KEY_B))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["detail"] == unknown.json()["detail"].replace(
            unknown.url.path.rsplit("/", 1)[1], job_id)
    assert store.status(job_id).value == "succeeded"  # B's cancel did nothing
    assert redis_conn.hget(store.job_key(job_id), "owner") == b"alice"
    assert KEY_A.encode() not in b"".join(
        v for v in redis_conn.hgetall(store.job_key(job_id)).values())


def test_queued_job_cancel_by_other_key_is_404_and_owner_can(client: TestClient) -> None:
    job_id = client.post("/generate", json=JOB_BODY, headers=bearer(KEY_B)).json()["id"]
    assert client.post(f"/jobs/{job_id}/cancel", headers=bearer(KEY_A)).status_code == 404
    r = client.post(f"/jobs/{job_id}/cancel", headers=bearer(KEY_B))
    assert r.status_code == 202 and r.json()["status"] == "canceled"


def test_uploads_are_owned(client: TestClient, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav", seconds=1.0, video=False)
    r = client.post("/uploads", files={"file": ("a.wav", clip.read_bytes(), "audio/wav")},
                    headers=bearer(KEY_A))
    assert r.status_code == 201, r.text
    body = {"mode": "audio-to-video", "upload_id": r.json()["upload_id"], **JOB_BODY}
    other = client.post("/generate", json=body, headers=bearer(KEY_B))
    assert other.status_code == 422 and "unknown or expired" in other.json()["detail"]
    assert client.post("/generate", json=body, headers=bearer(KEY_A)).status_code == 202


def test_idempotency_keys_are_per_api_key(client: TestClient) -> None:
    h = {"Idempotency-Key": "same"}
    a = client.post("/generate", json=JOB_BODY, headers={**bearer(KEY_A), **h}).json()["id"]
    b = client.post("/generate", json=JOB_BODY, headers={**bearer(KEY_B), **h}).json()["id"]
    assert a != b
    assert client.get(f"/jobs/{b}", headers=bearer(KEY_A)).status_code == 404


def test_ids_are_unguessable() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
    # 128 random bits: per-character entropy close to log2(64) = 6 bits, no shared prefixes
    chars = Counter("".join(i[:21] for i in ids))  # the 22nd char carries only 2 bits
    total = sum(chars.values())
    entropy = -sum(c / total * math.log2(c / total) for c in chars.values())
    assert entropy > 5.9
    assert len({i[:4] for i in ids}) > 1900
    assert not any(i.isdigit() for i in ids)


def test_open_mode_needs_no_key(settings: Settings) -> None:
    c = keyed_client(settings, open_mode=True)
    job_id = c.post("/generate", json=JOB_BODY).json()["id"]
    assert c.get(f"/jobs/{job_id}").status_code == 200


def test_key_configuration_is_hashed_and_checked(tmp_path: Path) -> None:
    entry = parse_key_entry(hash_key("k1"), where="x")
    assert entry.key_id == "key-" + hash_key("k1")[:12]
    assert parse_key_entry(f"svc-1:{hash_key('k1')}", where="x").key_id == "svc-1"
    with pytest.raises(ValueError, match="sha256 hex digest"):
        parse_key_entry("plain-text-key", where="MMD_API_KEYS")
    with pytest.raises(ValueError, match="sha256 hex digest"):
        Settings(api_keys=["plain-text-key"])
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team keys\nbob:{hash_key('kb')}\n\n{hash_key('kc')}\n")
    s = Settings(api_keys=[f"al:{hash_key('ka')}"], api_keys_file=keys_file, open_mode=False)
    assert [k.key_id for k in load_keys(s)] == ["al", "bob", "key-" + hash_key("kc")[:12]]
    auth = Authenticator(s)
    assert auth.identify("Bearer kb") == "bob" and auth.identify("bearer kc").startswith("key-")
    with pytest.raises(ValueError, match="does not exist"):
        load_keys(s.model_copy(update={"api_keys_file": tmp_path / "missing"}))


def test_secure_defaults(settings: Settings) -> None:
    assert Settings.model_fields["open_mode"].default is False
    unconfigured = TestClient(create_app(settings.model_copy(update={"open_mode": False})))
    assert unconfigured.post("/generate", json=JOB_BODY).status_code == 401  # no keys: no entry


def test_gateway_refuses_to_start_without_keys(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(MMD_REDIS_URL="redis://127.0.0.1:1/0", MMD_DATA_DIR=str(tmp_path),
               PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-m", "cli", "gateway"], env=env,
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no API keys configured" in out.stderr + out.stdout

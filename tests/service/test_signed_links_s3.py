"""On S3 a result's ``signed_url`` is the presigned URL: it plays from the real SeaweedFS S3
server with no header at all, and it carries no API key. (Rejecting a changed presigned URL is
S3's part; the test server runs without credentials, so it is not checked here.)"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.contract import JobResult, JobSpec, SampleFile
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import make_storage
from core.store import JobStore, result_key, utcnow
from service.app import create_app
from tests.helpers.auth import KEY_A, bearer, keyed_settings


def test_s3_signed_url_is_the_presigned_url(settings: Settings, store: JobStore,
                                            s3_endpoint: str, tmp_path: Path) -> None:
    s3 = keyed_settings(settings, storage_backend="s3", s3_endpoint_url=s3_endpoint,
                        s3_bucket="mmd", s3_access_key_id="test",
                        s3_secret_access_key=SecretStr("test"),
                        s3_prefix=f"t-{settings.key_prefix}", s3_presign_expiry_s=300)
    storage = make_storage(s3)
    spec = JobSpec(id="s3job", mode="joint", model="default", seed=1, num_samples=1,
                   sampler=SamplerParams(), super_resolution=SuperResolutionParams(),
                   created_at=utcnow())
    JobStore(store.redis, s3).create_and_enqueue(spec, owner="alice")
    payload = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
    src = tmp_path / "r.mp4"
    src.write_bytes(payload)
    storage.put_file(result_key("s3job", 0), src, content_type="video/mp4")
    job_store = JobStore(store.redis, s3)
    job_store.claim("s3job")
    sample = SampleFile(url="/jobs/s3job/result", bytes=len(payload), sha256="0" * 64)
    job_store.succeed("s3job", JobResult(
        url=sample.url, bytes=len(payload), duration_s=0.8, sha256="0" * 64,
        random_weights=True, model="default", width=64, height=64, fps=10, sample_rate=16000,
        samples=[sample]))
    client = TestClient(create_app(s3, storage=storage))
    doc = client.get("/jobs/s3job", headers=bearer(KEY_A)).json()
    url = doc["result"]["signed_url"]
    assert url.startswith(s3_endpoint) and "X-Amz-Signature=" in url
    assert "X-Amz-Expires=300" in url and KEY_A not in url
    assert doc["result"]["samples"][0]["signed_url"] == url
    r = httpx.get(url)  # straight from S3, no Authorization header
    assert r.status_code == 200 and r.content == payload
    storage.delete(result_key("s3job", 0))

"""End to end on S3 storage (a real SeaweedFS server): the upload streams to the bucket, the
result is a redirect to a presigned URL; then SIGTERM: the running job finishes, no new one
is taken, readiness is withdrawn at once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.media import FRAMES, decode, write_clip
from tests.helpers.servers import s3_client
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3_stack(e2e_redis: str, s3_endpoint: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("s3stack"), MMD_STORAGE_BACKEND="s3",
                    MMD_S3_ENDPOINT_URL=s3_endpoint, MMD_S3_BUCKET="mmd", MMD_S3_PREFIX="e2e",
                    MMD_S3_ACCESS_KEY_ID="test", MMD_S3_SECRET_ACCESS_KEY="test")
    yield s
    stop_stack(s)


def test_s3_upload_and_presigned_result(s3_stack: Stack, s3_endpoint: str,
                                        tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0)
    with s3_stack.client() as c, open(clip, "rb") as fh:
        r = c.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                   data={"seed": "5", "sampler.name": "ddim", "sampler.steps": "2",
                         "super_resolution.steps": "2"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        view = s3_stack.wait(job_id)
        assert view["status"] == "succeeded", (view, s3_stack.log_tail())
        redirect = c.get(f"/jobs/{job_id}/result", follow_redirects=False)
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(s3_endpoint) and "X-Amz-Signature" in location
    mp4 = httpx.get(location)
    assert mp4.status_code == 200 and len(mp4.content) == view["result"]["bytes"]
    info = decode(mp4.content, tmp_path)
    assert info["frames"] == FRAMES and info["shape"] == (64, 64, 3)
    keys = {o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(
        Bucket="mmd", Prefix="e2e/")["Contents"]}
    assert f"e2e/results/{job_id}/sample_0.mp4" in keys
    assert any(k.startswith(f"e2e/uploads/{job_id}/") for k in keys)  # streamed to the bucket


def test_sigterm_finishes_current_job_and_takes_no_new_one(s3_stack: Stack) -> None:
    ready_file = Path(s3_stack.env["MMD_WORKER_READY_FILE"])
    assert ready_file.exists()
    body = {"seed": 6, "sampler": {"name": "ddim", "steps": 100},
            "super_resolution": {"enabled": False}}
    with s3_stack.client() as c:
        first = c.post("/generate", json=body).json()["id"]
        s3_stack.wait(first, timeout=60, until=lambda v: v["progress"]["step"] >= 1
                      or v["status"] not in ("queued", "running"))
        s3_stack.worker.send_signal(signal.SIGTERM)
        second = c.post("/generate",
                        json={"seed": 7, "sampler": {"name": "ddim", "steps": 2}}).json()["id"]
        deadline = time.monotonic() + 10
        while ready_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ready_file.exists()
        # the signal handler removes the file at once; the Redis entry goes from the readiness
        # thread when it next wakes (no Redis call inside a signal handler), so poll for it
        while c.get("/readyz").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/readyz").status_code == 503
        done = s3_stack.wait(first, timeout=120)
        assert done["status"] == "succeeded", s3_stack.log_tail()
        assert s3_stack.worker.wait(timeout=60) == 0
        later = c.get(f"/jobs/{second}").json()
        assert later["status"] == "queued" and later["queue_position"] == 0
        canceled = c.delete(f"/jobs/{second}").json()  # a queued job is canceled at once
        assert canceled["status"] == "canceled" and canceled["queue_position"] is None

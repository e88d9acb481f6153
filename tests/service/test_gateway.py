"""Gateway routes against a real redis-server and local storage (no worker: jobs stay queued,
or the test plays the worker's part through the JobStore)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.contract import JobError, JobResult, JobStatus, SampleFile
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore, result_key
from service.app import create_app
from tests.helpers.media import write_clip


def _submit(client: TestClient, body: dict | None = None, **headers: str):
    return client.post("/generate", json=body or {"seed": 1, "sampler": {"steps": 3}},
                       headers=headers)


def test_generate_is_queued_with_urls_and_location(client: TestClient, store: JobStore) -> None:
    r = _submit(client)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert len(body["id"]) >= 20  # token_urlsafe(16): 22 characters
    assert r.headers["location"] == body["urls"]["self"]
    assert body["urls"]["result"].endswith(f"/jobs/{body['id']}/result")
    job = client.get(f"/jobs/{body['id']}").json()
    assert job["status"] == "queued"
    assert job["queue_position"] == 0
    assert job["request"]["seed"] == 1 and job["request"]["sampler"]["steps"] == 3
    assert job["progress"]["stage"] == "queued"
    assert store.queue.count == 1


def test_ids_are_distinct_and_random_seed_recorded(client: TestClient) -> None:
    a = _submit(client, {}).json()["id"]
    b = _submit(client, {}).json()["id"]
    assert a != b
    assert isinstance(client.get(f"/jobs/{a}").json()["request"]["seed"], int)
    assert client.get(f"/jobs/{b}").json()["queue_position"] == 1


def test_unknown_job_is_404(client: TestClient) -> None:
    for method, path in [("GET", "/jobs/nope"), ("GET", "/jobs/nope/result"),
                         ("POST", "/jobs/nope/cancel"), ("DELETE", "/jobs/nope")]:
        r = client.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert "nope" in r.json()["detail"]


@pytest.mark.parametrize(("body", "needle"), [
    ({"num_samples": 3}, "MMD_MAX_NUM_SAMPLES"),
    ({"sampler": {"steps": 51}}, "MMD_MAX_STEPS"),
    ({"super_resolution": {"steps": 31}}, "MMD_MAX_SR_STEPS"),
    ({"model": "nope"}, "configured models"),
    ({"mode": "audio-to-video"}, "exactly one of upload_id"),
    ({"upload_id": "x"}, "only used with mode"),
    ({"mode": "audio-to-video", "upload_id": "missing"}, "unknown or expired"),
])
def test_limits_and_bad_params_are_422(client: TestClient, body: dict, needle: str) -> None:
    r = _submit(client, body)
    assert r.status_code == 422, r.text
    assert needle in str(r.json()["detail"])


def test_pydantic_errors_name_the_field(client: TestClient) -> None:
    r = _submit(client, {"sampler": {"name": "euler"}})
    assert r.status_code == 422
    assert "dpm_solver" in r.text and "sampler" in r.text


def test_idempotency_key_returns_original_job(client: TestClient, store: JobStore) -> None:
    first = _submit(client, {"seed": 5}, **{"Idempotency-Key": "k-1"})
    again = _submit(client, {"seed": 5}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert store.queue.count == 1
    other = _submit(client, {"seed": 6}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and "different request" in other.text
    assert _submit(client, {"seed": 5}, **{"Idempotency-Key": "k-2"}).json()["id"] != \
        first.json()["id"]


def test_cancel_queued_job_never_runs(client: TestClient, store: JobStore) -> None:
    job_id = _submit(client).json()["id"]
    r = client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "canceled" and r.json()["finished_at"] is not None
    assert store.queue.count == 0
    assert store.claim(job_id) is False  # a worker that dequeued it anyway skips it
    again = client.delete(f"/jobs/{job_id}")  # already canceled: 409, as for a finished job
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_canceled"
    assert "already canceled" in again.json()["error"]["message"]


def test_cancel_running_sets_flag_and_finished_is_409(client: TestClient, store: JobStore) -> None:
    job_id = _submit(client).json()["id"]
    assert store.claim(job_id)
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 202 and r.json()["status"] == "running"
    assert store.cancel_requested(job_id)
    assert store.mark_canceled(job_id)
    done = _submit(client).json()["id"]
    store.claim(done)
    store.fail(done, JobError(code="boom", message="broken"))
    r = client.post(f"/jobs/{done}/cancel")
    assert r.status_code == 409 and "failed" in r.json()["detail"]
    view = client.get(f"/jobs/{done}").json()
    assert view["error"] == {"code": "boom", "message": "broken"}


def test_result_streams_with_range_requests(client: TestClient, store: JobStore,
                                            settings: Settings) -> None:
    job_id = _submit(client).json()["id"]
    assert client.get(f"/jobs/{job_id}/result").status_code == 409
    payload = bytes(range(256)) * 40
    path = Path(settings.data_dir) / "src.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    LocalStorage(settings.data_dir).put_file(result_key(job_id, 0), path, content_type="video/mp4")
    digest = hashlib.sha256(payload).hexdigest()
    store.claim(job_id)
    store.succeed(job_id, JobResult(
        url=f"/jobs/{job_id}/result", bytes=len(payload), duration_s=1.6, sha256=digest,
        random_weights=True, model="default", width=64, height=64, fps=10, sample_rate=16000,
        samples=[SampleFile(url=f"/jobs/{job_id}/result", bytes=len(payload), sha256=digest)]))
    view = client.get(f"/jobs/{job_id}").json()
    assert view["status"] == "succeeded" and view["progress"]["fraction"] == 1.0
    assert view["result"]["url"] == f"http://testserver/jobs/{job_id}/result"
    full = client.get(f"/jobs/{job_id}/result")
    assert full.status_code == 200 and full.content == payload
    assert full.headers["content-type"] == "video/mp4"
    part = client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == payload[100:200]
    assert client.get(f"/jobs/{job_id}/result?sample=1").status_code == 404


def test_video_upload_is_streamed_to_storage(client: TestClient, store: JobStore,
                                             settings: Settings, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    with open(clip, "rb") as fh:
        r = client.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                        data={"seed": "7", "sampler.steps": "4", "start_s": "0.2",
                              "super_resolution.enabled": "false"})
    assert r.status_code == 202, r.text
    spec = store.spec(r.json()["id"])
    assert spec is not None and spec.mode == "video-to-audio"
    assert spec.seed == 7 and spec.sampler.steps == 4 and spec.start_s == 0.2
    assert spec.super_resolution.enabled is False
    stored = Path(settings.data_dir) / spec.input_key
    assert stored.read_bytes() == clip.read_bytes()


def test_params_json_part_and_audio_upload(client: TestClient, store: JobStore,
                                           tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "a.wav", video=False)
    with open(wav, "rb") as fh:
        r = client.post("/audio-to-video", files={"file": ("a.wav", fh, "audio/wav")},
                        data={"params": '{"num_samples": 2, "guidance": "replacement"}'})
    assert r.status_code == 202, r.text
    spec = store.spec(r.json()["id"])
    assert spec is not None and spec.num_samples == 2 and spec.guidance == "replacement"


def test_upload_errors(client: TestClient, tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "a.wav", video=False)
    with open(wav, "rb") as fh:  # audio file to the video route
        r = client.post("/video-to-audio", files={"file": ("a.wav", fh, "audio/wav")})
    assert r.status_code == 415 and r.json()["error"]["code"] == "container_not_allowed"
    assert "holds no video stream" in r.json()["detail"]
    r = client.post("/audio-to-video", files={"file": ("x.mp3", b"not media at all", "audio/mpeg")})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert "a text file" in r.json()["detail"]
    r = client.post("/audio-to-video", data={"seed": "1"})
    assert r.status_code == 422
    big = b"\0" * 2_100_000  # over max_upload_bytes=2_000_000
    r = client.post("/audio-to-video", files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and "MMD_MAX_UPLOAD_BYTES" in r.text
    with open(wav, "rb") as fh:
        r = client.post("/audio-to-video", files={"file": ("a.wav", fh, "audio/wav")},
                        data={"num_samples": "9"})
    assert r.status_code == 422 and "num_samples" in r.text


def test_long_clip_is_413(settings: Settings, tmp_path: Path) -> None:
    short = TestClient(create_app(settings.model_copy(update={"max_clip_duration_s": 1.0})))
    wav = write_clip(tmp_path / "a.wav", video=False, seconds=2.0)
    with open(wav, "rb") as fh:
        r = short.post("/audio-to-video", files={"file": ("a.wav", fh, "audio/wav")})
    assert r.status_code == 413 and "MMD_MAX_CLIP_DURATION_S" in r.text


def test_upload_then_generate_audio_to_video(client: TestClient, store: JobStore,
                                             tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "a.wav", video=False)
    with open(wav, "rb") as fh:
        up = client.post("/uploads", files={"file": ("a.wav", fh, "audio/wav")})
    assert up.status_code == 201, up.text
    r = _submit(client, {"mode": "audio-to-video", "upload_id": up.json()["upload_id"]})
    assert r.status_code == 202, r.text
    spec = store.spec(r.json()["id"])
    assert spec is not None and spec.input_key is not None and spec.input_key.endswith(".wav")


def test_health_ready_and_metrics(client: TestClient, store: JobStore) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503 and "no worker" in r.json()["reason"]
    store.worker_heartbeat("w1", 30)
    assert client.get("/readyz").json() == {"status": "ready", "workers": 1}
    _submit(client, {"seed": 3})
    text = client.get("/metrics").text
    assert 'mmd_jobs_submitted_total{mode="joint"}' in text
    assert "mmd_queue_depth 1.0" in text
    assert 'route="/generate"' in text and "mmd_http_request_duration_seconds_bucket" in text
    store.worker_gone("w1")
    assert client.get("/readyz").status_code == 503


def test_openapi_lists_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/generate", "/video-to-audio", "/audio-to-video", "/uploads", "/jobs/{job_id}",
                 "/jobs/{job_id}/result", "/jobs/{job_id}/cancel", "/healthz", "/readyz"]:
        assert path in paths
    assert JobStatus.canceled.is_terminal() and not JobStatus.running.is_terminal()

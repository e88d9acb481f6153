"""``duration_s`` at submit (issue 12): its bounds (``MMD_MAX_DURATION_S``), a span past the
end of the upload (``422 span_past_end`` naming the upload's length) and ``MMD_MAX_WINDOWS``
(counted from the model preset's window, ``core.windows``), on the multipart routes (form field
and JSON ``params``) and on ``POST /generate`` with ``mode: "audio-to-video"``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.contract import JobSpec
from core.settings import Settings
from service.app import create_app
from tests.helpers.hostile_media import good_mp4, good_wav


def _post(client: TestClient, endpoint: str, name: str, data: bytes,
          **fields: str) -> tuple[int, dict]:
    r = client.post(f"/{endpoint}", files={"file": (name, data, "application/octet-stream")},
                    data={"sampler.steps": "2"} | fields)
    return r.status_code, r.json()


def _spec(settings: Settings, client: TestClient, job_id: str) -> JobSpec:
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return JobSpec.model_validate(r.json()["request"])


def test_duration_within_the_upload_is_queued_and_stored(client: TestClient,
                                                         settings: Settings,
                                                         tmp_path: Path) -> None:
    status, body = _post(client, "audio-to-video", "a.wav", good_wav(tmp_path, 3.0),
                         duration_s="2.5", start_s="0.5")
    assert status == 202, body
    assert _spec(settings, client, body["id"]).duration_s == 2.5
    status, body = _post(client, "audio-to-video", "a.wav", good_wav(tmp_path, 3.0))
    assert status == 202, body
    assert _spec(settings, client, body["id"]).duration_s is None  # one window: today's path


@pytest.mark.parametrize("endpoint", ["video-to-audio", "audio-to-video"])
def test_duration_past_the_end_of_the_upload_names_its_length(client: TestClient,
                                                              tmp_path: Path,
                                                              endpoint: str) -> None:
    name, data = (("clip.mp4", good_mp4(tmp_path)) if endpoint == "video-to-audio"
                  else ("a.wav", good_wav(tmp_path, 2.0)))
    status, body = _post(client, endpoint, name, data, duration_s="3")
    assert (status, body["error"]["code"]) == (422, "span_past_end"), body
    assert "lasts 2.00 s" in body["detail"] and "at most 2.00 s" in body["detail"], body
    status, body = _post(client, endpoint, name, data, start_s="0.5", duration_s="1.6")
    assert (status, body["error"]["code"]) == (422, "span_past_end"), body
    assert "at most 1.50 s" in body["detail"], body
    status, body = _post(client, endpoint, name, data, params=json.dumps({"duration_s": 2.0}))
    assert status == 202, body  # exactly the upload, as a JSON params part


def test_duration_bounds(client: TestClient, tmp_path: Path) -> None:
    wav = good_wav(tmp_path, 2.0)
    for value in ("0", "-1"):
        status, body = _post(client, "audio-to-video", "a.wav", wav, duration_s=value)
        assert status == 422 and body["error"]["field"] == "duration_s", body
    status, body = _post(client, "audio-to-video", "a.wav", wav, duration_s="61")
    assert status == 422 and body["error"]["field"] == "duration_s", body
    assert "MMD_MAX_DURATION_S" in body["detail"] and "60 s" in body["detail"], body


def test_max_windows_is_counted_from_the_models_window(settings: Settings,
                                                       tmp_path: Path) -> None:
    """The tiny preset's window is 8 frames = 0.8 s with an overlap of 2 frames: 2.0 s = 20
    frames needs 1 + ceil(12 / 6) = 3 windows, 1.4 s = 14 frames needs 2."""
    client = TestClient(create_app(settings.model_copy(update={"max_windows": 2})))
    wav = good_wav(tmp_path, 2.0)
    status, body = _post(client, "audio-to-video", "a.wav", wav, duration_s="2")
    assert status == 422 and body["error"]["field"] == "duration_s", body
    assert "3 model windows of 0.8 s" in body["detail"] and "MMD_MAX_WINDOWS" in body["detail"]
    status, body = _post(client, "audio-to-video", "a.wav", wav, duration_s="1.4")
    assert status == 202, body


def test_generate_audio_to_video_takes_duration_and_joint_refuses_it(client: TestClient,
                                                                     tmp_path: Path) -> None:
    r = client.post("/uploads", files={"file": ("a.wav", good_wav(tmp_path, 2.0), "audio/wav")})
    upload_id = r.json()["upload_id"]
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id": upload_id,
                                       "duration_s": 4})
    assert r.status_code == 422 and r.json()["error"]["code"] == "span_past_end", r.text
    assert "lasts 2.00 s" in r.json()["detail"]
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id": upload_id,
                                       "duration_s": 2, "sampler": {"steps": 2}})
    assert r.status_code == 202, r.text
    r = client.post("/generate", json={"duration_s": 2})
    assert r.status_code == 422 and r.json()["error"]["field"] == "duration_s", r.text

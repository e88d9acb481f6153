"""The gateway's media rules of issue 16, with real files sent through the routes: only the stream
an endpoint uses is judged (OGG Theora + Vorbis for audio-to-video; AC-3 audio beside a video
that video-to-audio uses), clips too short or ``start_s`` past the end are a 422 at submit that
names the clip's length, a minimum frame size, and AC-3 named in a clean message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue

from core.probe import UploadRejected, check_span, check_upload
from core.settings import Settings
from tests.helpers.hostile_media import _write, good_mp4, good_wav

FFMPEG = shutil.which("ffmpeg")


@pytest.fixture(scope="module")
def theora_vorbis(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 s of OGG with Theora video and Vorbis audio, made by the ffmpeg CLI (PyAV's FFmpeg
    has no Theora encoder)."""
    if FFMPEG is None:
        pytest.skip("the ffmpeg CLI is not installed (needed to write Theora)")
    out = tmp_path_factory.mktemp("ogg") / "tv.ogg"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=16000", "-t", "2", "-c:v", "libtheora",
                    "-c:a", "libvorbis", str(out)], check=True, timeout=60)
    return out.read_bytes()


def _h264_with_ac3(tmp: Path) -> bytes:
    return _write(tmp / "ac3.mkv", "matroska", [("ac3", 48000)], seconds=1.0,
                  video=("libx264", 32, 32)).read_bytes()


def _post(client: TestClient, endpoint: str, name: str, data: bytes,
          **fields: str) -> tuple[int, dict]:
    r = client.post(f"/{endpoint}", files={"file": (name, data, "application/octet-stream")},
                    data={"sampler.steps": "2"} | fields)
    return r.status_code, r.json()


def test_audio_to_video_judges_only_the_audio_stream(client: TestClient, theora_vorbis: bytes,
                                                     redis_conn: Redis,
                                                     settings: Settings) -> None:
    status, body = _post(client, "audio-to-video", "tv.ogg", theora_vorbis)
    assert status == 202, body  # Theora is not in MMD_VIDEO_CODECS, and it is not used
    assert Queue(settings.queue_name, connection=redis_conn).count == 1
    status, body = _post(client, "video-to-audio", "tv.ogg", theora_vorbis)
    assert (status, body["error"]["code"]) == (415, "unsupported_codec"), body
    assert "'theora'" in body["detail"] and "MMD_VIDEO_CODECS" in body["detail"]


def test_video_to_audio_judges_only_the_video_stream(client: TestClient,
                                                     tmp_path: Path) -> None:
    data = _h264_with_ac3(tmp_path)
    status, body = _post(client, "video-to-audio", "clip.mkv", data)
    assert status == 202, body  # its AC-3 audio is not used
    status, body = _post(client, "audio-to-video", "clip.mkv", data)
    assert (status, body["error"]["code"]) == (415, "unsupported_codec"), body
    assert "'ac3'" in body["detail"] and "MMD_AUDIO_CODECS" in body["detail"]


def test_uploads_keep_a_file_with_one_usable_stream(client: TestClient, theora_vorbis: bytes,
                                                    tmp_path: Path) -> None:
    """``POST /uploads`` (later used by audio-to-video) keeps a file whose audio is usable, and a
    file whose only usable stream is video is refused at ``/generate`` with the reason."""
    r = client.post("/uploads", files={"file": ("tv.ogg", theora_vorbis, "audio/ogg")})
    assert r.status_code == 201, r.text
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id":
                                       r.json()["upload_id"], "sampler": {"steps": 2}})
    assert r.status_code == 202, r.text
    r = client.post("/uploads", files={"file": ("c.mkv", _h264_with_ac3(tmp_path), "video/x")})
    assert r.status_code == 201, r.text
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id":
                                       r.json()["upload_id"]})
    assert r.status_code == 422 and "'ac3'" in r.text and "no usable audio" in r.text, r.text


def test_generate_checks_start_s_against_the_uploaded_audio(client: TestClient,
                                                           tmp_path: Path) -> None:
    r = client.post("/uploads", files={"file": ("a.wav", good_wav(tmp_path, 2.0), "audio/wav")})
    upload_id = r.json()["upload_id"]
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id": upload_id,
                                       "start_s": 5})
    assert r.status_code == 422 and r.json()["error"]["code"] == "start_past_end", r.text
    assert "lasts 2.00 s" in r.json()["detail"]
    r = client.post("/generate", json={"mode": "audio-to-video", "upload_id": upload_id,
                                       "start_s": 1.0, "sampler": {"steps": 2}})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(("seconds", "start_s", "code"), [
    (0.05, "0", "clip_too_short"), (0.4, "0", "clip_too_short"), (0.5, "0", None),
    (2.0, "1.6", "clip_too_short"), (2.0, "1.5", None), (2.0, "2", "start_past_end"),
    (2.0, "30", "start_past_end")])
def test_short_clips_and_late_starts_are_refused_at_submit(client: TestClient, tmp_path: Path,
                                                          seconds: float, start_s: str,
                                                          code: str | None) -> None:
    """Under MMD_MIN_CLIP_DURATION_S (0.5 s) left from start_s: 422 naming the clip's length;
    from 0.5 s to the window (1.6 s) it is accepted (and padded by the worker)."""
    status, body = _post(client, "audio-to-video", "a.wav", good_wav(tmp_path, seconds),
                         start_s=start_s)
    if code is None:
        assert status == 202, body
        return
    assert (status, body["error"]["code"]) == (422, code), body
    assert f"{seconds:.2f} s" in body["detail"], body  # the clip's length
    if code == "clip_too_short":
        assert "MMD_MIN_CLIP_DURATION_S=0.5 s" in body["detail"]


def test_the_limits_are_settings(settings: Settings, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(good_mp4(tmp_path))  # 2 s, 32x32
    assert check_upload(clip, need="video", settings=settings).video_duration_s == \
        pytest.approx(2.0, abs=0.05)
    for update, code in (({"min_video_side": 33}, "video_too_small"),
                         ({"min_clip_duration_s": 2.5}, "clip_too_short")):
        with pytest.raises(UploadRejected) as err:
            check_upload(clip, need="video", settings=settings.model_copy(update=update))
        assert err.value.code == code and "MMD_MIN_" in err.value.detail
    check_upload(clip, need="video", settings=settings.model_copy(
        update={"min_video_side": 32, "min_clip_duration_s": 2.0}))
    check_span(None, 100.0, settings)  # unknown duration (raw streams): the worker decides


def test_unknown_bytes_and_ac3_get_clean_messages(client: TestClient, settings: Settings,
                                                   tmp_path: Path) -> None:
    status, body = _post(client, "audio-to-video", "a.bin", b"\x00\x01garbage" * 50)
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    assert "match no supported audio/video container" in body["detail"], body
    assert "looks like not" not in body["detail"]
    ac3 = _write(tmp_path / "a.ac3", "ac3", [("ac3", 48000)], seconds=1.0).read_bytes()
    status, body = _post(client, "audio-to-video", "a.ac3", ac3)
    assert (status, body["error"]["code"]) == (415, "unsupported_codec"), body
    assert body["detail"].startswith("the audio codec 'ac3' is not accepted")
    allowing = settings.model_copy(update={"audio_codecs": ["ac3"]})  # an operator's choice
    assert check_upload(tmp_path / "a.ac3", need="audio", settings=allowing).kind == "ac3"

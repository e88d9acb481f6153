"""The gateway's upload checks (magic bytes, bounded PyAV probe, limits) on the generated hostile
corpus: each upload gets its precise 4xx and ``error.code``, nothing is stored or enqueued; the
files that only fail when decoded pass the gateway (the e2e test runs them in a real worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue

from core.probe import UPLOAD_ERROR_CODES, UploadRejected, check_upload
from core.settings import Settings
from core.sniff import sniff_bytes
from service.app import create_app
from tests.helpers.hostile_media import Case, corpus, good_mp4, good_wav
from tests.helpers.media import write_clip

CASES = corpus()


def test_corpus_is_big_and_varied() -> None:
    assert len(CASES) >= 30
    at_gateway = {c.code for c in CASES if not c.fails_in_worker}
    assert {"unsupported_media_type", "unreadable_media", "no_video_stream", "no_audio_stream",
            "dimensions_too_large", "clip_too_long", "too_many_streams", "unsupported_codec",
            "invalid_audio", "empty_upload", "upload_too_large"} <= at_gateway
    assert {c.status for c in CASES} == {202, 413, 415, 422}


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "mp4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "mp4"),
    (b"\x00\x00\x00\x08wide\x00\x00\x00\x00", "mp4"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "matroska"),
    (b"OggS\x00\x02" + bytes(20), "ogg"),
    (b"fLaC\x00\x00\x00\x22", "flac"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
    (b"RIFF\x24\x00\x00\x00AVI LIST", None),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
    (b"\xff\xfb\x90\x64" + bytes(8), "mp3"),  # MPEG-1 layer III, 128 kb/s, 44.1 kHz
    (b"\xff\xfb\xf0\x64" + bytes(8), None),  # bitrate index 15 is invalid
    (b"\xff\xf1\x50\x80" + bytes(8), "aac"),
    (b"\x89PNG\r\n\x1a\n" + bytes(8), None),
    (b"PK\x03\x04" + bytes(20), None),
    (b"%PDF-1.7\n", None),
    (b"", None),
])
def test_sniff_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_bytes(head) == kind


def _uploaded_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.data_dir / "uploads").rglob("*") if p.is_file()] \
        if (settings.data_dir / "uploads").exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_upload_at_the_gateway(case: Case, settings: Settings, redis_conn: Redis,
                                       tmp_path: Path) -> None:
    client = TestClient(create_app(settings))
    data = case.make(tmp_path)
    r = client.post(f"/{case.endpoint}", files={"file": (case.filename, data, "video/mp4")},
                    data=dict(case.fields) | {"sampler.steps": "2"})
    queue = Queue(settings.queue_name, connection=redis_conn)
    if case.fails_in_worker:  # headers are fine: accepted, the worker finds the problem
        assert r.status_code in (201, 202), r.text
        return
    assert r.status_code == case.status, r.text
    body = r.json()
    assert body["error"]["code"] == case.code, body
    assert UPLOAD_ERROR_CODES[case.code][0] == case.status
    assert body["detail"] == body["error"]["message"] and len(body["detail"]) > 20
    assert queue.count == 0  # nothing enqueued
    assert _uploaded_files(settings) == []  # nothing stored


def test_uploads_route_rejects_with_code_and_stores_nothing(settings: Settings,
                                                            tmp_path: Path) -> None:
    client = TestClient(create_app(settings))
    r = client.post("/uploads", files={"file": ("x.zip", b"PK\x03\x04" + bytes(100), "a/b")})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/uploads", files={"file": ("a.wav", good_wav(tmp_path), "audio/wav")})
    assert r.status_code == 201
    assert len(_uploaded_files(settings)) == 1


def test_codec_allow_list_is_a_setting(offline_settings: Settings, tmp_path: Path) -> None:
    settings = offline_settings  # pure logic: no Redis
    wav = tmp_path / "a.wav"
    wav.write_bytes(good_wav(tmp_path))
    assert check_upload(wav, need="audio", settings=settings).has_audio  # pcm_* by default
    strict = settings.model_copy(update={"audio_codecs": ["aac", "mp3"]})
    with pytest.raises(UploadRejected) as err:
        check_upload(wav, need="audio", settings=strict)
    assert err.value.code == "unsupported_codec" and "pcm_s16le" in str(err.value.detail)
    assert "MMD_AUDIO_CODECS" in str(err.value.detail)


def test_stream_dimension_and_duration_limits_are_settings(offline_settings: Settings,
                                                          tmp_path: Path) -> None:
    settings = offline_settings  # pure logic: no Redis
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(good_mp4(tmp_path))  # 2 s, 32x32, H.264 + AAC
    info = check_upload(clip, need="video", settings=settings)
    assert (info.kind, info.has_video, info.has_audio) == ("mp4", True, True)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    for update, code, status in (({"max_streams": 1}, "too_many_streams", 422),
                                 ({"max_video_width": 31}, "dimensions_too_large", 413),
                                 ({"max_video_height": 16}, "dimensions_too_large", 413),
                                 ({"max_clip_duration_s": 1.5}, "clip_too_long", 413)):
        with pytest.raises(UploadRejected) as err:
            check_upload(clip, need="video", settings=settings.model_copy(update=update))
        assert (err.value.code, err.value.status_code) == (code, status), update


def test_probe_is_bounded_in_time(offline_settings: Settings, tmp_path: Path) -> None:
    settings = offline_settings  # pure logic: no Redis
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(good_mp4(tmp_path))
    with pytest.raises(UploadRejected) as err:  # PyAV's interrupt callback stops the probe
        check_upload(clip, need="video", settings=settings.model_copy(
            update={"probe_timeout_s": 1e-9}))
    assert (err.value.code, err.value.status_code) == ("probe_timeout", 422)
    assert "MMD_PROBE_TIMEOUT_S" in str(err.value.detail)


def test_upload_rejected_needs_a_known_code() -> None:
    with pytest.raises(ValueError, match="unknown upload error code"):
        UploadRejected("nope", "x")


def test_real_clips_are_accepted(shared_media: Path, offline_settings: Settings) -> None:
    settings = offline_settings  # pure logic: no Redis
    big = settings.model_copy(update={"max_upload_bytes": 100 * 1024 * 1024,
                                      "max_clip_duration_s": 600.0})
    for name in ("landscape.mp4", "audioset.mp4"):
        for need in ("video", "audio", "any"):
            info = check_upload(shared_media / name, need=need,  # type: ignore[arg-type]
                                settings=big)
            assert info.has_video and info.has_audio and info.kind == "mp4"


def test_wav_made_by_the_fixture_is_accepted(offline_settings: Settings, tmp_path: Path) -> None:
    settings = offline_settings  # pure logic: no Redis
    wav = write_clip(tmp_path / "tone.wav", video=False)
    assert check_upload(wav, need="audio", settings=settings).kind == "wav"

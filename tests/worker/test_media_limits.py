"""Decode limits of worker/media.py (frames, samples, wall clock) and the runner's mapping of
every decode failure to a failed job with a code (never a crashed worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore
from tests.helpers.hostile_media import _write
from tests.helpers.http import serve_dir
from tests.helpers.jobs import FakeGenerate, make_runner, make_spec
from tests.helpers.media import write_clip
from worker import media


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of a constant picture, H.264 at 10 fps: one key frame at 0, so seeking to 5 s
    decodes ~50 frames."""
    return _write(tmp_path_factory.mktemp("still") / "still.mp4", "mp4", [], seconds=6.0,
                  video=("libx264", 32, 32))


def test_decoded_frames_limit(still_clip: Path) -> None:
    assert media.decode_video_clip(still_clip, start_s=0.0, size=16, max_frames=20).shape == \
        (16, 16, 16, 3)
    with pytest.raises(media.MediaError) as err:
        media.decode_video_clip(still_clip, start_s=5.0, num_frames=4, size=16, max_frames=20)
    assert err.value.code == "decode_limit" and "MMD_MAX_DECODED_FRAMES" in str(err.value)
    # the same request within a larger budget
    assert media.decode_video_clip(still_clip, start_s=5.0, num_frames=4, size=16,
                                   max_frames=100).shape == (4, 16, 16, 3)


def test_decoded_samples_limit(tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "a.wav", video=False, seconds=3.0)  # 16 kHz mono
    assert media.decode_audio(wav, num_samples=16000, max_samples=30_000).shape == (16000,)
    with pytest.raises(media.MediaError) as err:
        media.decode_audio(wav, start_s=2.0, num_samples=8000, max_samples=30_000)
    assert err.value.code == "decode_limit" and "MMD_MAX_DECODED_SAMPLES" in str(err.value)


def test_decode_wall_clock_limit(still_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(media.MediaError) as err:
        media.decode_video_clip(still_clip, timeout_s=1e-9)
    assert err.value.code == "decode_timeout"
    wav = write_clip(tmp_path / "a.wav", video=False)
    with pytest.raises(media.MediaError) as err:
        media.decode_audio(wav, timeout_s=1e-9)
    assert err.value.code == "decode_timeout"


def test_probe_reports_canonical_codec_names(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4")
    info = media.probe(clip)
    assert (info.video.codec, info.audio.codec) == ("h264", "aac")  # type: ignore[union-attr]


def test_runner_maps_decode_failures_to_codes(settings: Settings, store: JobStore,
                                              still_clip: Path, tmp_path: Path) -> None:
    storage = LocalStorage(settings.data_dir)
    storage.put_file("uploads/s/input.mp4", still_clip, content_type="video/mp4")
    tight = settings.model_copy(update={"max_decoded_frames": 20})
    runner = make_runner(tight, store, FakeGenerate(), sr=False)
    spec = make_spec("video-to-audio", input_key="uploads/s/input.mp4", start_s=5.0)
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "failed"
    view = store.view(spec.id)
    assert view is not None and view.error is not None and view.error.code == "decode_limit"

    # an unexpected exception inside PyAV is a decode_failed job, not an internal error
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("codec exploded")

    runner = make_runner(settings, store, FakeGenerate(), sr=False)
    spec = make_spec("video-to-audio", input_key="uploads/s/input.mp4")
    store.create_and_enqueue(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(media, "decode_video_input", explode)
        assert runner.run(spec.id) == "failed"
    view = store.view(spec.id)
    assert view is not None and view.error is not None
    assert view.error.code == "decode_failed" and "codec exploded" in view.error.message


def test_audio_url_inputs_get_the_gateway_checks(settings: Settings, store: JobStore,
                                                 tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    write_clip(tmp_path / "video.mp4", audio=False)
    with serve_dir(tmp_path) as base:
        runner = make_runner(settings, store, FakeGenerate(), sr=False)
        for name, code in (("doc.pdf", "unsupported_media_type"),
                           ("video.mp4", "no_audio_stream")):
            spec = make_spec("audio-to-video", input_url=f"{base}/{name}")
            store.create_and_enqueue(spec)
            assert runner.run(spec.id) == "failed"
            view = store.view(spec.id)
            assert view is not None and view.error is not None
            assert view.error.code == code and name in view.error.message


def test_pixel_limit_per_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", size=64)
    assert media.decode_video_clip(clip, size=16, max_pixels=64 * 64).shape == (16, 16, 16, 3)
    with pytest.raises(media.MediaError) as err:
        media.decode_video_clip(clip, size=16, max_pixels=64 * 63)
    assert err.value.code == "frame_too_large" and "64x64" in str(err.value)

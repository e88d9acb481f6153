"""A ``duration_s`` job through the job runner (real Redis, local storage, the random tiny
models): windows x steps progress, SR over every frame of the span, ``result.windows`` and
``nfe``, cancel within one step, ``MMD_MAX_WINDOWS`` re-checked against the loaded model, and
one window's worth of ``duration_s`` taking today's single-window pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.contract import JobStatus, Progress
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore, result_key
from tests.helpers.jobs import FakeGenerate, make_spec
from tests.helpers.media import write_clip
from worker import media
from worker.runner import JobRunner

FAST = {"sampler": SamplerParams(name="ddim", steps=2), "guidance": "replacement",
        "super_resolution": SuperResolutionParams(sampler="ddim", steps=2)}


def _runner(settings: Settings, store: JobStore, tiny: Any, gen: FakeGenerate) -> JobRunner:
    return JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                     models={"default": tiny}, generate_batch=gen)


def _upload(settings: Settings, tmp: Path) -> str:
    key = "uploads/w/input.wav"
    LocalStorage(settings.data_dir).put_file(
        key, write_clip(tmp / "a.wav", video=False, seconds=2.0), content_type="audio/wav")
    return key


def test_audio_to_video_span_with_sr(settings: Settings, store: JobStore, tiny: Any,
                                     tmp_path: Path) -> None:
    """1.4 s = 14 frames of the tiny 8-frame window with overlap 2: 2 windows; 2 DDIM steps a
    window -> base progress to 4 of 4; SR x4 over all 14 frames (16x16 -> 64x64)."""
    gen = FakeGenerate()
    runner = _runner(settings, store, tiny, gen)
    seen: list[Progress] = []
    runner.on_progress = seen.append
    spec = make_spec("audio-to-video", input_key=_upload(settings, tmp_path), duration_s=1.4,
                     start_s=0.3, **FAST)
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    assert gen.requests == []  # not the single-window pipeline
    view = store.view(spec.id)
    assert view is not None and view.result is not None
    r = view.result
    assert r.windows == 2 and r.nfe["base"] == 4 and r.nfe["base_backward"] == 0, r.nfe
    assert r.nfe["sr"] == 2 and (r.width, r.height, r.fps) == (64, 64, 10)
    assert isinstance(r.fps, float) and r.video == "generated"
    assert r.duration_s == pytest.approx(1.4)
    base = [(p.step, p.total) for p in seen if p.stage == "base"]
    assert base[-1] == (4, 4) and base == sorted(base)
    fractions = [p.fraction for p in seen if p.stage in ("base", "sr")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    path = LocalStorage(settings.data_dir).local_path(result_key(spec.id, 0))
    assert path is not None
    info = media.probe(path)
    video = next(s for s in info.streams if s.type == "video")
    assert (video.width, video.height, video.fps) == (64, 64, 10.0)


def test_cancel_within_one_window_step(settings: Settings, store: JobStore, tiny: Any,
                                       tmp_path: Path) -> None:
    spec = make_spec("audio-to-video", input_key=_upload(settings, tmp_path), duration_s=2.0,
                     **FAST)
    runner = _runner(settings, store, tiny, FakeGenerate())
    steps: list[int] = []

    def observe(p: Progress) -> None:
        if p.stage == "base":
            steps.append(p.step)
            if p.step == 2:
                store.cancel(spec.id)

    runner.on_progress = observe
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "canceled"
    assert max(steps) == 2  # 3 windows x 2 steps planned; stopped at the next report
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.canceled and view.result is None


def test_max_windows_is_checked_against_the_loaded_model(settings: Settings, store: JobStore,
                                                         tiny: Any, tmp_path: Path) -> None:
    runner = _runner(settings.model_copy(update={"max_windows": 2}), store, tiny,
                     FakeGenerate())
    spec = make_spec("audio-to-video", input_key=_upload(settings, tmp_path), duration_s=2.0,
                     **FAST)
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "failed"
    view = store.view(spec.id)
    assert view is not None and view.error is not None
    assert view.error.code == "invalid_request" and "MMD_MAX_WINDOWS" in view.error.message


def test_one_window_of_duration_runs_todays_pipeline(settings: Settings, store: JobStore,
                                                     tiny: Any, tmp_path: Path) -> None:
    gen = FakeGenerate()
    runner = _runner(settings, store, tiny, gen)
    spec = make_spec("audio-to-video", input_key=_upload(settings, tmp_path), duration_s=0.8,
                     **FAST)  # the tiny window: 8 frames at 10 fps
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    assert len(gen.requests) == 1 and gen.requests[0].condition_audio.shape == (2048,)
    view = store.view(spec.id)
    assert view is not None and view.result is not None and view.result.windows == 1
    assert view.result.video == "generated" and view.result.fps == 10.0


@pytest.fixture(scope="module")
def demo() -> Any:
    """The demo base model (8 frames of 16x16 at 8 fps, 2048 Hz audio, v-prediction), random
    weights, no SR."""
    import torch

    from model.registry import load_models

    torch.manual_seed(0)
    return load_models("default", preset="demo", sr=False)


def test_demo_audio_to_video_span_at_the_models_fps(settings: Settings, store: JobStore,
                                                     demo: Any, tmp_path: Path) -> None:
    """1.5 s of the demo model = 12 frames at its 8 fps (not 15 at 10 fps): 2 windows of 8
    with overlap 2; the result video is at 8 fps, 12 frames, with the upload's audio at the
    MP4 rate (16 kHz) lasting as long."""
    runner = _runner(settings, store, demo, FakeGenerate())
    spec = make_spec("audio-to-video", input_key=_upload(settings, tmp_path), duration_s=1.5,
                     **{**FAST, "super_resolution": SuperResolutionParams(enabled=False)})
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    view = store.view(spec.id)
    assert view is not None and view.result is not None, view
    r = view.result
    assert r.windows == 2 and r.nfe["base"] == 4, r.nfe
    assert (r.width, r.height, r.fps, r.sample_rate) == (16, 16, 8, 16000)
    assert r.duration_s == pytest.approx(1.5)
    path = LocalStorage(settings.data_dir).local_path(result_key(spec.id, 0))
    assert path is not None
    frames = media.decode_video_clip(path, num_frames=12, fps=8, size=16)
    assert frames.shape[0] == 12
    info = media.probe(path)
    video = next(s for s in info.streams if s.type == "video")
    audio = next(s for s in info.streams if s.type == "audio")
    assert video.fps == 8.0 and audio.sample_rate == 16000
    assert audio.duration_s is not None and 1.5 <= audio.duration_s <= 1.5 + 1024 / 16000


def test_demo_video_to_audio_span_keeps_the_picture(settings: Settings, store: JobStore,
                                                    demo: Any, tmp_path: Path) -> None:
    """The demo model's 2048 Hz soundtrack comes back resampled to 16 kHz over the span,
    under the upload's own 32x32 10 fps picture."""
    key = "uploads/w/input.mp4"
    LocalStorage(settings.data_dir).put_file(
        key, write_clip(tmp_path / "v.mp4", seconds=2.0), content_type="video/mp4")
    runner = _runner(settings, store, demo, FakeGenerate())
    spec = make_spec("video-to-audio", input_key=key, duration_s=1.5, **FAST)
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    view = store.view(spec.id)
    assert view is not None and view.result is not None, view
    r = view.result
    assert r.windows == 2 and (r.width, r.height, r.fps, r.sample_rate) == (32, 32, 10, 16000)
    assert r.video == "reencoded"  # 1.5 s of the 2 s upload: not the whole stream
    path = LocalStorage(settings.data_dir).local_path(result_key(spec.id, 0))
    assert path is not None
    audio = next(s for s in media.probe(path).streams if s.type == "audio")
    assert audio.sample_rate == 16000
    assert audio.duration_s is not None and 1.5 <= audio.duration_s <= 1.5 + 1024 / 16000

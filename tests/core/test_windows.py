"""The gateway's torch-free window table and count (``core.windows``) agree with the model:
each preset's window frames and fps with ``UNetConfig.preset``, the count with
``plan_windows`` at the worker's default overlap and rate, over many durations."""

from __future__ import annotations

import pytest

from core.windows import (
    WINDOWS,
    is_one_window,
    span_sample_rate,
    window_count,
    window_s,
)

MODEL_PRESETS = ("landscape", "aist++", "aist", "official", "tiny", "demo")


def test_the_table_names_every_model_preset() -> None:
    assert set(WINDOWS) == set(MODEL_PRESETS)


@pytest.mark.parametrize("preset", MODEL_PRESETS)
def test_window_geometry_is_the_models(preset: str) -> None:
    from model.config import UNetConfig

    cfg = UNetConfig.preset(preset)
    geometry = WINDOWS[preset]
    assert (geometry.frames, geometry.fps) == (cfg.video_size[0], cfg.fps)
    assert window_s(preset) == cfg.seconds


@pytest.mark.parametrize("preset", ["landscape", "tiny", "demo"])
def test_window_count_is_the_plans(preset: str) -> None:
    from model.config import UNetConfig
    from model.whole_clip import default_overlap
    from model.windows import plan_windows

    cfg = UNetConfig.preset(preset)
    frames, samples = cfg.video_size[0], cfg.audio_size[1]
    rate = span_sample_rate(frames, samples, cfg.fps, cfg.sample_rate)
    assert rate is not None
    for tenth in range(1, 601, 7):
        duration = tenth / 10 + 0.03
        plan = plan_windows(duration, window_frames=frames, window_samples=samples,
                            overlap_frames=default_overlap(frames), fps=cfg.fps, sample_rate=rate)
        assert window_count(duration, preset) == plan.count, duration
    assert window_count(60.0, "landscape") == 50  # the figure the docs quote


def test_span_rate_is_the_declared_one_when_it_spans_the_window() -> None:
    assert span_sample_rate(16, 25600, 10, 16000) == 16000  # official
    assert span_sample_rate(8, 2048, 8, 2048) == 2048  # demo
    assert span_sample_rate(8, 2048, 10, 16000) == 2560  # tiny: 0.8 s a window
    assert span_sample_rate(3, 1000, 10, 16000) is None


def test_one_window_is_todays_path() -> None:
    assert is_one_window(None, "landscape") and is_one_window(1.6, "landscape")
    assert not is_one_window(1.0, "landscape") and not is_one_window(3.2, "landscape")
    assert is_one_window(1.0, "demo") and not is_one_window(0.8, "demo")
    assert window_count(10.0, "demo") == 13  # 80 frames, windows of 8 with stride 6
    assert window_count(3.0, "unknown-preset") is None

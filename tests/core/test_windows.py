"""The gateway's torch-free window table and count (``core.windows``) agree with the model:
each preset's window frames with ``UNetConfig.preset``, the count with ``plan_windows`` at the
worker's default overlap, over many durations."""

from __future__ import annotations

import pytest

from core.windows import FPS, WINDOW_FRAMES, is_one_window, window_count


@pytest.mark.parametrize("preset", sorted(WINDOW_FRAMES))
def test_window_frames_are_the_models(preset: str) -> None:
    from model.config import UNetConfig
    from model.pipeline_types import FPS as MODEL_FPS

    cfg = UNetConfig.preset(preset)
    assert WINDOW_FRAMES[preset] == cfg.video_size[0] and FPS == MODEL_FPS


@pytest.mark.parametrize("preset", ["landscape", "tiny"])
def test_window_count_is_the_plans(preset: str) -> None:
    from model.config import UNetConfig
    from model.whole_clip import default_overlap
    from model.windows import plan_windows

    cfg = UNetConfig.preset(preset)
    frames, samples = cfg.video_size[0], cfg.audio_size[1]
    rate = samples * FPS // frames
    for tenth in range(1, 601, 7):
        duration = tenth / 10 + 0.03
        plan = plan_windows(duration, window_frames=frames, window_samples=samples,
                            overlap_frames=default_overlap(frames), fps=FPS, sample_rate=rate)
        assert window_count(duration, preset) == plan.count, duration
    assert window_count(60.0, "landscape") == 50  # the figure the docs quote


def test_one_window_is_todays_path() -> None:
    assert is_one_window(None, "landscape") and is_one_window(1.6, "landscape")
    assert not is_one_window(1.0, "landscape") and not is_one_window(3.2, "landscape")
    assert window_count(3.0, "unknown-preset") is None

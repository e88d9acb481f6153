"""model/windows.py: the window plan (boundaries, overlaps, last partial window, one window,
exact multiples) and the crossfade stitching."""

from __future__ import annotations

import itertools

import pytest
import torch

from model.windows import Window, crossfade_weights, plan_windows, stitch

# the official geometry: 16 frames at 10 fps = 25600 samples at 16 kHz = 1.6 s
OFFICIAL = {"window_frames": 16, "window_samples": 25600, "fps": 10, "sample_rate": 16000}


def _check_invariants(plan, overlap: int) -> None:
    ws = plan.windows
    assert ws[0].frame_start == 0 and ws[0].sample_start == 0
    assert ws[-1].frame_end == plan.frames and ws[-1].sample_end == plan.samples
    for w in ws:
        assert w.frame_end - w.frame_start == plan.window_frames
        assert w.sample_end - w.sample_start == plan.window_samples
        assert w.sample_start * plan.fps == w.frame_start * plan.sample_rate  # aligned
    for a, b in itertools.pairwise(ws):
        assert b.frame_start > a.frame_start
        assert b.overlap_frames == a.frame_end - b.frame_start >= overlap
        assert b.overlap_samples == a.sample_end - b.sample_start
    overlaps = [w.overlap_frames for w in ws[1:]]
    assert max(overlaps) - min(overlaps) <= 1  # the slack is spread evenly


def test_exact_multiple_has_the_stride_and_no_slack() -> None:
    # 16 + 3 * 12 = 52 frames = 5.2 s with overlap 4: exactly 4 windows at stride 12
    plan = plan_windows(5.2, overlap_frames=4, **OFFICIAL)
    assert plan.frames == 52 and plan.samples == 83200
    assert [w.frame_start for w in plan.windows] == [0, 12, 24, 36]
    assert [w.sample_start for w in plan.windows] == [0, 19200, 38400, 57600]
    assert [w.overlap_frames for w in plan.windows] == [0, 4, 4, 4]
    assert [w.overlap_samples for w in plan.windows] == [0, 6400, 6400, 6400]
    assert plan.joints() == [(19200, 25600), (38400, 44800), (57600, 64000)]
    _check_invariants(plan, 4)


def test_last_partial_window_is_spread_back_to_the_clip_end() -> None:
    # 10 s = 100 frames; stride 12 -> 16 + 7*12 = 100 exactly; take 10.3 s = 103 frames instead
    plan = plan_windows(10.3, overlap_frames=4, **OFFICIAL)
    assert plan.frames == 103 and plan.samples == 164800
    assert plan.count == 9  # 1 + ceil((103 - 16) / 12)
    assert plan.windows[-1].frame_end == 103  # no padding, the last window ends at the end
    assert all(w.pad_frames == 0 and w.pad_samples == 0 for w in plan.windows)
    _check_invariants(plan, 4)
    # one frame more than a multiple: one more window, overlaps grow
    plan = plan_windows(5.3, overlap_frames=4, **OFFICIAL)
    assert plan.frames == 53 and plan.count == 5
    assert [w.frame_start for w in plan.windows] == [0, 9, 19, 28, 37]
    _check_invariants(plan, 4)


@pytest.mark.parametrize("frames", range(17, 80))
@pytest.mark.parametrize("overlap", [0, 1, 4, 7])
def test_invariants_over_lengths(frames: int, overlap: int) -> None:
    plan = plan_windows(frames / 10, overlap_frames=overlap, **OFFICIAL)
    assert plan.frames == frames
    stride = 16 - overlap
    assert plan.count == 1 + -(-(frames - 16) // stride)
    _check_invariants(plan, overlap)


def test_one_window_exactly() -> None:
    plan = plan_windows(1.6, overlap_frames=4, **OFFICIAL)
    assert plan.windows == (Window(0, 0, 16, 0, 25600, 0, 0, 0, 0),)
    assert plan.joints() == []


def test_shorter_than_one_window_pads() -> None:
    plan = plan_windows(0.95, overlap_frames=4, **OFFICIAL)
    assert plan.frames == 10 and plan.samples == 16000  # 0.95 s rounds to 10 frames = 1.0 s
    (w,) = plan.windows
    assert (w.frame_end, w.sample_end, w.pad_frames, w.pad_samples) == (10, 16000, 6, 9600)


def test_non_integer_samples_per_frame() -> None:
    # 30 fps, 16 kHz: 533.33 samples per frame; a 15-frame window = 8000 samples = 0.5 s
    plan = plan_windows(2.0, window_frames=15, window_samples=8000, overlap_frames=3, fps=30,
                        sample_rate=16000)
    assert plan.frames == 60 and plan.samples == 32000
    for w in plan.windows:
        assert w.sample_start == int(w.frame_start * 16000 / 30 + 0.5)
        assert w.sample_end - w.sample_start == 8000
    assert plan.windows[-1].sample_end == 32000


@pytest.mark.parametrize("kwargs,match", [
    ({"window_samples": 2048}, "0.1280 s"),          # tiny preset at 16 kHz: geometry mismatch
    ({"overlap_frames": 16}, "overlap_frames"),
    ({"overlap_frames": -1}, "overlap_frames"),
    ({"duration_s": 0.0}, "duration_s"),
    ({"duration_s": float("nan")}, "duration_s"),
    ({"fps": 0}, "fps"),
])
def test_bad_arguments_say_what_to_do(kwargs: dict, match: str) -> None:
    args = dict(OFFICIAL, duration_s=3.0, overlap_frames=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plan_windows(**args)


def test_crossfade_weights_partition_unity_and_stitch_is_exact_for_agreeing_windows() -> None:
    plan = plan_windows(5.3, overlap_frames=4, **OFFICIAL)
    for modality, total in (("video", plan.frames), ("audio", plan.samples)):
        acc = torch.zeros(total, dtype=torch.float64)
        for w, weight in zip(plan.windows, crossfade_weights(plan, modality), strict=False):
            start = w.frame_start if modality == "video" else w.sample_start
            acc[start:start + weight.shape[0]] += weight
            assert float(weight.min()) > 0 and float(weight.max()) == 1.0
        assert torch.allclose(acc, torch.ones_like(acc), atol=1e-12)  # two-deep overlaps only
    # windows cut from one clip stitch back to that clip
    video = torch.randn(2, plan.frames, 3, 4, 4)
    audio = torch.randn(2, 1, plan.samples)
    vp = [video[:, w.frame_start:w.frame_end] for w in plan.windows]
    ap = [audio[..., w.sample_start:w.sample_end] for w in plan.windows]
    assert torch.allclose(stitch(plan, vp, "video"), video, atol=1e-6)
    assert torch.allclose(stitch(plan, ap, "audio"), audio, atol=1e-6)
    # disagreeing windows: inside the overlap the result moves smoothly from one to the other
    ones = [torch.full((1, 1, 25600), float(k)) for k in range(plan.count)]
    out = stitch(plan, ones, "audio")[0, 0]
    j0, j1 = plan.joints()[0]
    assert float(out[: j0].max()) == 0.0 and float(out[j1:j1 + 10].min()) == 1.0
    assert bool((out[j0:j1].diff() >= 0).all())


def test_stitch_cuts_a_padded_window() -> None:
    plan = plan_windows(0.95, overlap_frames=4, **OFFICIAL)
    out = stitch(plan, [torch.arange(25600.0).reshape(1, 1, -1)], "audio")
    assert out.shape == (1, 1, 16000) and float(out[0, 0, -1]) == 15999.0

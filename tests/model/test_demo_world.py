"""The demo world: deterministic, the documented shapes and ranges, tones where the squares are."""

from __future__ import annotations

import torch

from model.config import SRConfig, UNetConfig
from model.demo.train import base_geometry, sr_batch
from model.demo.world import (
    EVENT_FRAMES,
    Geometry,
    draw_events,
    pitches_hz,
    render,
    render_clip,
    sample_batch,
)

GEO = base_geometry(UNetConfig.preset("demo"))


def test_demo_geometry_matches_preset() -> None:
    cfg = UNetConfig.preset("demo")
    assert (GEO.frames, GEO.size, GEO.fps, GEO.sample_rate) == (8, 16, 8, 2048)
    assert GEO.audio_length == cfg.audio_size[1]
    assert cfg.seconds == GEO.audio_length / GEO.sample_rate == 1.0
    assert pitches_hz(GEO.sample_rate) == (256.0, 384.0, 512.0)


def test_batch_is_seeded_and_shaped() -> None:
    a = sample_batch(4, GEO, torch.Generator().manual_seed(7))
    b = sample_batch(4, GEO, torch.Generator().manual_seed(7))
    c = sample_batch(4, GEO, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    video, audio = a
    assert video.shape == (4, 8, 3, 16, 16) and audio.shape == (4, 1, 2048)
    assert video.min() >= -1 and video.max() <= 1 and audio.abs().max() <= 0.5 + 1e-6


def test_events_light_frames_and_sound_tones_together() -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        events = draw_events(GEO.frames, g)
        assert 1 <= len(events) <= 3
        video, audio = render(events, GEO)
        on = {e.start + k for e in events for k in range(EVENT_FRAMES)}
        spf = GEO.samples_per_frame
        for f in range(GEO.frames):
            lit = bool((video[f] > -1).any())
            loud = bool(audio[0, f * spf:(f + 1) * spf].abs().max() > 0.1)
            assert lit == loud == (f in on)
        for e in events:  # the lit colour is the event's
            frame = video[e.start]
            assert int(((frame + 1) / 2).sum(dim=(1, 2)).argmax()) == e.colour


def test_long_clip_and_sr_pairs() -> None:
    video, audio = render_clip(5, GEO, seconds=60)
    assert video.shape == (480, 3, 16, 16) and audio.shape == (1, 60 * 2048)
    assert torch.equal(render_clip(5, GEO)[0], render_clip(5, GEO)[0])
    low, high = sr_batch(3, SRConfig.preset("demo_sr"), torch.Generator().manual_seed(1))
    assert low.shape == (3, 3, 16, 16) and high.shape == (3, 3, 32, 32)
    # the high-res frame averaged down looks like the low-res one (same events, both sizes)
    down = torch.nn.functional.avg_pool2d(high, 2)
    assert (down - low).abs().mean() < 0.1


def test_geometry_rejects_fractional_samples_per_frame() -> None:
    try:
        Geometry(frames=8, fps=3, size=16, sample_rate=2048)
    except ValueError as exc:
        assert "multiple of fps" in str(exc)
    else:
        raise AssertionError("expected ValueError")

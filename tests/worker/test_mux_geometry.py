"""Every MP4 the worker writes has audio and video of the same duration (within one frame), at
the model preset's geometry: tiny (2048 samples at 16 kHz under 8 frames at 10 fps), demo (8
frames at 8 fps, audio at 2048 Hz, which AAC cannot carry: resampled to 16 kHz) and the official
one (16 frames at 10 fps, 25600 samples at 16 kHz; config only, frames at 64 px)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from model.config import UNetConfig
from worker.muxing import mp4_sample_rate, mux_mp4


def _decode(path: Path) -> tuple[int, float, int, np.ndarray]:
    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, fps, rate, audio


@pytest.mark.parametrize("preset", ["tiny", "demo", "landscape"])
def test_audio_lasts_as_long_as_the_video(preset: str, tmp_path: Path) -> None:
    cfg = UNetConfig.preset(preset)
    frames, _, size, _ = cfg.video_size
    length = cfg.audio_size[1]
    t = np.arange(length) / cfg.sample_rate
    tone = (0.5 * np.sin(2 * np.pi * cfg.sample_rate / 8 * t)).astype(np.float32)
    video = np.random.default_rng(0).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    out = tmp_path / f"{preset}.mp4"
    mux_mp4(out, video, tone, fps=cfg.fps, sample_rate=cfg.sample_rate)
    n, fps, rate, audio = _decode(out)
    assert (n, fps, rate) == (frames, float(cfg.fps), mp4_sample_rate(cfg.sample_rate))
    assert rate >= 16000
    video_s, audio_s = n / fps, len(audio) / rate
    assert abs(audio_s - video_s) <= 1 / cfg.fps, (preset, video_s, audio_s)
    # the model's tone (an eighth of its sample rate) is what plays, resampled
    heard = audio[: min(length * rate // cfg.sample_rate, len(audio))]
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    peak = np.fft.rfftfreq(len(heard), 1 / rate)[spectrum.argmax()]
    assert abs(peak - cfg.sample_rate / 8) < 0.02 * cfg.sample_rate / 8, peak


def test_mp4_sample_rate_is_an_aac_rate_of_16_khz_or_more() -> None:
    assert [mp4_sample_rate(r) for r in (2048, 2560, 16000, 22050, 44100, 48000)] == \
        [16000, 16000, 16000, 22050, 44100, 48000]

"""`mmd demo-clip`: a real MP4 (H.264 + AAC) whose decoded soundtrack follows its picture."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from model.demo.quality import evaluate
from worker.demo_clip import main, resample


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, int, int, str, str]:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        names = (v.codec_context.name, a.codec_context.name)
        rate, fps = a.rate, round(float(v.average_rate))
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio, rate, fps, *names


def test_demo_clip_is_a_synchronised_mp4(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    assert main([str(out), "--seed", "4", "--seconds", "4"]) == 0
    frames, audio, rate, fps, vcodec, acodec = _decode(out)
    assert (vcodec, acodec, rate, fps) == ("h264", "aac", 16000, 8)
    assert frames.shape == (32, 64, 64, 3)
    assert 4 * 16000 <= len(audio) <= 4 * 16000 + 1024  # AAC pads the last frame
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 127.5 - 1
    q = evaluate(video, torch.from_numpy(audio[: 4 * 16000].copy())[None], 2048 / 16000)
    assert q.sync > 0.8  # the raw clip scores 0.95; H.264 + AAC + resampling cost a little
    assert q.colour_pitch > 0.8


def test_resample_keeps_a_tone() -> None:
    t = np.arange(2048) / 2048
    tone = (0.5 * np.sin(2 * np.pi * 256 * t)).astype(np.float32)
    out = resample(tone, 2048, 16000)
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.fft.rfftfreq(12000, 1 / 16000)[spectrum.argmax()] - 256) < 3


def test_too_long_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([str(tmp_path / "x.mp4"), "--seconds", "100000"]) == 2
    assert "--seconds" in capsys.readouterr().err

"""bench/whole_clip_quality.py on synthetic MP4s with known answers: bursts of sound on the
frames where the picture moves are in sync (lag 0), the same sound 3 frames late is found at
lag 3; a level step at every window joint makes the seam figure large, steady noise keeps it
near 1."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.whole_clip_quality import FPS, RATE, measure, plan_for

SECONDS = 6.0  # tiny preset: 60 frames = 10 windows of 8 frames


def _write(path: Path, audio: np.ndarray, moves: set[int]) -> Path:
    """30 fps 64x48 H.264 whose picture jumps at the 10 fps frames in ``moves`` (and holds
    otherwise), plus ``audio`` (16 kHz mono AAC)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        ast = out.add_stream("aac", rate=RATE, layout="mono")
        shade = 60
        for i in range(int(SECONDS * 30)):
            if i % 3 == 0 and i // 3 in moves:
                shade = 200 if shade == 60 else 60
            img = np.full((48, 64, 3), shade, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        for s in range(0, audio.size, 1024):
            af = av.AudioFrame.from_ndarray(audio[s:s + 1024].reshape(1, -1).astype(np.float32),
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts = RATE, s
            out.mux(ast.encode(af))
        out.mux(ast.encode(None))
    return path


def _bursts(frames: set[int], shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(int(SECONDS * RATE))
    hop = RATE // FPS
    for k in frames:
        a = (k + shift) * hop
        audio[a:a + hop] += 0.5 * rng.standard_normal(audio[a:a + hop].size)
    return audio


def test_sync_finds_aligned_and_shifted_sound(tmp_path: Path) -> None:
    moves = {k for k in range(2, 57) if k % 7 in (0, 3)}
    r = measure(_write(tmp_path / "sync.mp4", _bursts(moves), moves), "tiny")
    assert r["windows"] == 10 and r["frames"] == 60
    assert r["lag_whole"] == 0 and r["sync_whole"] > 0.5, r
    late = measure(_write(tmp_path / "late.mp4", _bursts(moves, shift=3), moves), "tiny")
    assert late["lag_whole"] == -3 and late["sync_whole"] < r["sync_whole"], late


def test_seam_sees_a_level_step_at_each_joint(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    steady = 0.1 * rng.standard_normal(int(SECONDS * RATE))
    r = measure(_write(tmp_path / "steady.mp4", steady, set()), "tiny")
    assert 0.5 < r["seam"] < 2.0 and abs(r["seam_joint_db"]) < 1.0, r
    plan = plan_for(60, "tiny")
    stepped = steady.copy()
    for w in plan.windows[1::2]:  # every other window 12 dB louder: a step at every joint
        a = w.sample_start + w.overlap_samples // 2
        b = (plan.windows[w.index + 1].sample_start + plan.windows[w.index + 1].overlap_samples
             // 2) if w.index + 1 < plan.count else stepped.size
        stepped[a:b] *= 4.0
    s = measure(_write(tmp_path / "stepped.mp4", stepped, set()), "tiny")
    assert s["seam"] > 2 * r["seam"], (s, r)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

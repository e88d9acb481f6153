"""``mmd demo-clip OUT.mp4 --seed N [--seconds S]``: a clip of the demo world as a real MP4.

The clip is rendered at the demo model's geometry (``UNetConfig.preset("demo")``: 16 x 16 frames
at 8 fps, audio at 2048 Hz; :mod:`model.demo.world`), the frames upscaled (nearest) to at least
``--size`` (64) pixels and the true soundtrack resampled with PyAV to ``--sample-rate``
(16000 Hz), then muxed as H.264 + AAC by :func:`worker.muxing.mux_mp4`. Default length: one
model window (1 s); ``--seconds`` up to :data:`MAX_SECONDS`. Users try video-to-audio with it.
"""

from __future__ import annotations

import argparse
import math
import sys

from worker.muxing import mux_mp4, resample

__all__ = ["MAX_SECONDS", "demo_clip", "main", "resample"]

MAX_SECONDS = 600.0  # longest clip --seconds accepts


def demo_clip(out_path: str, seed: int, seconds: float | None = None, *, size: int = 64,
              sample_rate: int = 16000) -> tuple[int, int]:
    """Write the clip; returns ``(frames, audio samples)`` written."""
    import torch

    from model.config import UNetConfig
    from model.demo.train import base_geometry
    from model.demo.world import render_clip

    if seconds is not None and not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"--seconds must be in (0, {MAX_SECONDS:g}]; got {seconds}")
    geo = base_geometry(UNetConfig.preset("demo"))
    video, audio = render_clip(seed, geo, seconds)
    factor = max(1, math.ceil(size / geo.size))
    frames = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    frames = frames.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    frames_np = frames.permute(0, 2, 3, 1).contiguous().numpy()
    wave = resample(audio[0].numpy(), geo.sample_rate, sample_rate)
    mux_mp4(out_path, frames_np, wave, fps=geo.fps, sample_rate=sample_rate)
    return frames_np.shape[0], len(wave)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmd demo-clip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output .mp4 path")
    p.add_argument("--seed", type=int, default=0, help="clip seed (0)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"length in seconds (default one model window; at most {MAX_SECONDS:g})")
    p.add_argument("--size", type=int, default=64, help="minimum frame size in pixels (64)")
    p.add_argument("--sample-rate", type=int, default=16000, help="MP4 audio rate in Hz (16000)")
    args = p.parse_args(argv)
    try:
        n, t = demo_clip(args.out, args.seed, args.seconds, size=args.size,
                         sample_rate=args.sample_rate)
    except ValueError as exc:
        print(f"mmd demo-clip: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {n} frames, {t} audio samples at {args.sample_rate} Hz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

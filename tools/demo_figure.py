"""docs/images/demo.png: what the default demo job makes, a frame strip over its spectrogram.

    python3 tools/demo_figure.py                      # run the default demo job (seed 1), plot it
    python3 tools/demo_figure.py --seed 7 --out x.png
    python3 tools/demo_figure.py --mp4 result.mp4     # plot an MP4 (a downloaded job result)

The default job is what ``mmd serve`` runs for ``POST /generate {"seed": N}``: the shipped demo
weights (``MMD_DEMO_WEIGHTS_DIR`` replaces their folder), the fast sampler preset, SR on, muxed
to an MP4 by the worker's muxer and decoded back with PyAV, so the figure shows the file a user
gets. Top: the frames (nearest-neighbour upscaled); below, aligned in time: the soundtrack's
spectrogram from 0 to 1 kHz (log magnitude), with ticks at the world's three pitches in their
colours (red 256 Hz, green 384 Hz, blue 512 Hz). A flash of a colour should sit over a line at
that colour's pitch. The PNG is written with numpy and zlib only (no plotting library needed).
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

OUT = REPO_ROOT / "docs" / "images" / "demo.png"
FRAME_PX = 96  # each frame's width in the figure
GAP = 4
SPEC_H = 160  # spectrogram height in pixels
MAX_HZ = 1024.0
PITCHES = ((256.0, (230, 40, 40)), (384.0, (40, 200, 40)), (512.0, (60, 90, 255)))
# a dark-to-bright colour map (black, purple, orange, pale yellow), interpolated
CMAP = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]],
                dtype=np.float64)


def run_default_job(seed: int, out_mp4: Path) -> Path:
    """The default demo job (as ``mmd serve`` runs it) muxed to ``out_mp4``."""
    import torch

    from core.settings import get_settings
    from model.pipeline import GenerationRequest, generate
    from model.registry import load_models, shipped_weights
    from worker.muxing import mux_mp4
    from worker.sampling import preset_specs

    torch.set_num_threads(1)
    weights = shipped_weights("demo", get_settings().demo_weights_dir)
    assert weights is not None
    models = load_models("demo", preset="demo", checkpoint=weights["base"],
                         sr_checkpoint=weights["sr"])
    base, sr = preset_specs(get_settings().sampling_preset)
    result = generate(GenerationRequest(seed=seed, base_sampler=base, sr_sampler=sr), models)
    mux_mp4(out_mp4, result.frames[0], result.audio[0], fps=result.fps,
            sample_rate=result.sample_rate)
    return out_mp4


def read_mp4(path: Path) -> tuple[np.ndarray, float, np.ndarray, int]:
    """``frames uint8 [F, H, W, 3]``, fps, ``audio float32 [T]``, sample rate (PyAV)."""
    import av

    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate or 0)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        rate = int(c.streams.audio[0].rate)
        audio = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    return frames, fps, audio.astype(np.float32), rate


def frame_strip(frames: np.ndarray) -> np.ndarray:
    """The frames side by side, each upscaled (nearest) to :data:`FRAME_PX` wide."""
    _, h, w, _ = frames.shape
    scale = max(1, FRAME_PX // w)
    tiles = [f.repeat(scale, 0).repeat(scale, 1) for f in frames]
    gap = np.full((h * scale, GAP, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, tile in enumerate(tiles):
        parts += [tile] if i == 0 else [gap, tile]
    return np.concatenate(parts, axis=1)


def spectrogram(audio: np.ndarray, rate: int, seconds: float, width: int) -> np.ndarray:
    """``uint8 [SPEC_H, width, 3]``: log magnitude from 0 (bottom) to :data:`MAX_HZ` (top) over
    the first ``seconds`` of ``audio``, ``width`` columns."""
    audio = audio[: round(seconds * rate)]
    n_fft = int(2 ** np.ceil(np.log2(rate / 16)))  # ~16 Hz bins
    window = np.hanning(n_fft)
    padded = np.pad(audio, (n_fft // 2, n_fft // 2))
    centres = np.linspace(0, len(audio), width, endpoint=False).astype(int)
    cols = np.stack([padded[c : c + n_fft] * window for c in centres])
    mag = np.abs(np.fft.rfft(cols, axis=1))  # [width, bins]
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    rows = np.linspace(MAX_HZ, 0, SPEC_H)
    img = np.stack([np.interp(rows, freqs, col) for col in mag], axis=1)  # [SPEC_H, width]
    db = 20 * np.log10(img + 1e-6)
    db = np.clip((db - (db.max() - 60)) / 60, 0, 1)  # 60 dB of range
    pos = db * (len(CMAP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(CMAP) - 2)
    frac = (pos - lo)[..., None]
    rgb: np.ndarray = (CMAP[lo] * (1 - frac) + CMAP[lo + 1] * frac).round().astype(np.uint8)
    return rgb


def figure(frames: np.ndarray, fps: float, audio: np.ndarray, rate: int) -> np.ndarray:
    """The figure: the strip over the time-aligned spectrogram, pitch ticks at the left."""
    strip = frame_strip(frames)
    width = strip.shape[1]
    spec = spectrogram(audio, rate, len(frames) / fps, width)
    tick_w = 10
    ticks = np.full((SPEC_H, tick_w, 3), 255, np.uint8)
    for hz, colour in PITCHES:
        row = round((1 - hz / MAX_HZ) * (SPEC_H - 1))
        ticks[max(row - 1, 0) : row + 2, :] = colour
    body = np.concatenate([ticks, spec], axis=1)
    top = np.concatenate([np.full((strip.shape[0], tick_w, 3), 255, np.uint8), strip], axis=1)
    sep = np.full((GAP * 2, body.shape[1], 3), 255, np.uint8)
    img = np.concatenate([top, sep, body], axis=0)
    return np.pad(img, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=255)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """``uint8 [H, W, 3]`` as an 8-bit RGB PNG (zlib, no filter)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                                         0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mp4", type=Path, default=None, help="plot this MP4 instead of running "
                   "the default demo job")
    p.add_argument("--seed", type=int, default=1, help="seed of the default job (1)")
    p.add_argument("--out", type=Path, default=OUT, help=f"PNG path ({OUT.relative_to(REPO_ROOT)})")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmd-figure-") as tmp:
        mp4 = args.mp4 or run_default_job(args.seed, Path(tmp) / "demo.mp4")
        frames, fps, audio, rate = read_mp4(mp4)
    write_png(args.out, figure(frames, fps, audio, rate))
    print(f"wrote {args.out}: {len(frames)} frames at {fps:g} fps, audio at {rate} Hz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

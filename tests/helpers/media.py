"""Real media for tests: a short clip written with PyAV, an MP4 decoded back."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import av
import numpy as np

FRAMES, SIZE, AUDIO = 8, 64, 2048


def decode(data: bytes, tmp: Path) -> dict[str, Any]:
    """Frame count, size, fps, audio samples and rate of an MP4, decoded with PyAV."""
    path = tmp / f"{hashlib.sha256(data).hexdigest()[:8]}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps = float(v.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate = a.rate
        samples = sum(f.samples for f in c.decode(audio=0))
    return {"frames": len(frames), "shape": frames[0].shape, "fps": fps, "rate": rate,
            "samples": samples, "path": path}


def write_clip(path: Path, *, seconds: float = 2.0, fps: int = 10, size: int = 32,
               audio: bool = True, video: bool = True) -> Path:
    """A small real media file (H.264+AAC MP4, or WAV when video=False) made with PyAV."""
    import av

    rng = np.random.default_rng(0)
    n_frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        vs = as_ = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
        if audio:
            as_ = out.add_stream("aac" if video else "pcm_s16le", rate=16000)
            as_.layout = "mono"
        if vs is not None:
            for i in range(n_frames):
                img = np.full((size, size, 3), (i * 10) % 255, np.uint8)
                img[: size // 2] = rng.integers(0, 255, (size // 2, size, 3), dtype=np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if as_ is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            chunk = 1024
            for start in range(0, len(wave), chunk):
                piece = wave[start:start + chunk][None, :]
                frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
                frame.sample_rate = 16000
                frame.pts = start
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path

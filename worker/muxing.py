"""MP4 muxing with PyAV (no torch): ``uint8`` frames + ``float32`` audio -> H.264 + AAC.

Re-exported by :mod:`worker.media`; import it from there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av
import numpy as np

# AAC frames are 1024 samples; the encoder adds that much priming, the muxer an edit list.
AAC_FRAME_SAMPLES = 1024

PathLike = str | os.PathLike[str]


def mux_mp4(
    out_path: PathLike,
    frames: np.ndarray,
    audio: np.ndarray,
    *,
    fps: int = 10,
    sample_rate: int = 16000,
    crf: int = 18,
    audio_bitrate: int = 64_000,
) -> None:
    """Write ``frames uint8 [F, H, W, 3]`` + ``audio float32 [T]`` as an MP4 (H.264 + AAC).

    Video: libx264, yuv420p, ``crf`` quality, ``fps`` frames per second; odd ``H``/``W`` are
    padded by one edge-replicated row/column (yuv420p needs even sizes). Audio: mono AAC at
    ``sample_rate``, values clipped to ``[-1, 1]``. The ``moov`` atom is moved to the front
    (``movflags=+faststart``) so browsers can start playing before the download ends. The file is
    written to a temporary name in the same folder and renamed, so readers never see half a file.

    Decoded back, the video has exactly ``F`` frames; the audio has ``T`` samples up to one AAC
    frame (:data:`AAC_FRAME_SAMPLES`): the encoder's priming is hidden by the MP4 edit list but
    the last frame is padded with silence.
    """
    frames = np.asarray(frames)
    audio = np.asarray(audio)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [F, H, W, 3] with F >= 1; got {frames.dtype} "
                         f"{frames.shape}")
    if audio.ndim != 1 or audio.shape[0] < 1:
        raise ValueError(f"audio must be a 1-D float array [T] with T >= 1; got shape "
                         f"{audio.shape}")
    if fps <= 0 or sample_rate <= 0:
        raise ValueError(f"fps and sample_rate must be positive; got fps={fps}, "
                         f"sample_rate={sample_rate}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mp4", dir=out.parent)
    os.close(fd)
    try:
        _write_mp4(tmp_name, frames, np.clip(audio.astype(np.float32), -1.0, 1.0), fps, sample_rate,
                   crf, audio_bitrate)
        os.replace(tmp_name, out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _write_mp4(
    path: str, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int, crf: int,
    audio_bitrate: int,
) -> None:
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        vs = container.add_stream(
            "libx264", rate=fps, options={"crf": str(crf), "preset": "medium"}
        )
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        ast = container.add_stream("aac", rate=sample_rate, layout="mono")
        ast.bit_rate = audio_bitrate
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts = i
            container.mux(vs.encode(vf))
        container.mux(vs.encode(None))
        frame_size = ast.codec_context.frame_size or AAC_FRAME_SAMPLES
        for start in range(0, audio.shape[0], frame_size):
            chunk = audio[start : start + frame_size]
            af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            af.sample_rate = sample_rate
            af.pts = start
            container.mux(ast.encode(af))
        container.mux(ast.encode(None))

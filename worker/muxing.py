"""MP4 muxing with PyAV (no torch): ``uint8`` frames + ``float32`` audio -> H.264 + AAC.

The frames and the audio come at the model's geometry (``UNetConfig.fps`` / ``sample_rate``;
the demo model's audio is 2048 Hz, which AAC does not take): the audio is resampled to the
MP4's rate (:func:`mp4_sample_rate`, at least 16 kHz) and padded with silence or cut to the
video's duration, so both streams of every MP4 last ``F / fps`` seconds.

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
# the sample rates AAC (MPEG-4 audio) defines
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200,
                    96000)
# the lowest MP4 audio rate we write: below it players and browsers play muffled or not at all
MIN_MP4_SAMPLE_RATE = 16000

PathLike = str | os.PathLike[str]


def mp4_sample_rate(rate: int) -> int:
    """The MP4 audio rate for audio at ``rate`` Hz: the smallest AAC rate at or above both
    ``rate`` and :data:`MIN_MP4_SAMPLE_RATE` (2048 -> 16000, 16000 -> 16000, 44100 -> 44100)."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive; got {rate}")
    for candidate in AAC_SAMPLE_RATES:
        if candidate >= max(rate, MIN_MP4_SAMPLE_RATE):
            return candidate
    return AAC_SAMPLE_RATES[-1]


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono ``float32 [T]`` at ``rate_in`` -> ``float32 [round(T * rate_out / rate_in)]``
    (PyAV's swresample, flushed; trimmed or zero-padded to that exact length)."""
    want = round(len(audio) * rate_out / rate_in)
    if rate_in == rate_out:
        return audio.astype(np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32)[None],
                                       format="flt", layout="mono")
    frame.sample_rate = rate_in
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(out) < want:
        out = np.pad(out, (0, want - len(out)))
    return out[:want].astype(np.float32)


def fit_audio(audio: np.ndarray, sample_rate: int, frames: int, fps: int) -> np.ndarray:
    """``audio float32 [T]`` at ``sample_rate`` as the MP4's audio track: resampled to
    :func:`mp4_sample_rate` and padded with silence (or cut) to ``frames / fps`` seconds.
    (The golden ``tiny`` preset makes 2048 samples at 16 kHz, 0.128 s, under 0.8 s of video:
    silence follows its audio.)"""
    rate = mp4_sample_rate(sample_rate)
    out = resample(np.asarray(audio, dtype=np.float32), sample_rate, rate)
    want = round(frames * rate / fps)
    if len(out) < want:
        out = np.pad(out, (0, want - len(out)))
    return out[:want]


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
    padded by one edge-replicated row/column (yuv420p needs even sizes). Audio (``audio`` is at
    ``sample_rate``): mono AAC at :func:`mp4_sample_rate` of it, lasting ``F / fps`` seconds as
    the video does (:func:`fit_audio`), values clipped to ``[-1, 1]``. ``fps`` and
    ``sample_rate`` default to the official models' geometry; pass the model's
    (``GenerationResult.fps`` / ``sample_rate``). The ``moov`` atom is moved to the front
    (``movflags=+faststart``) so browsers can start playing before the download ends. The file is
    written to a temporary name in the same folder and renamed, so readers never see half a file.

    Decoded back, the video has exactly ``F`` frames; the audio has ``F / fps`` seconds of
    samples up to one AAC frame (:data:`AAC_FRAME_SAMPLES`, 64 ms at 16 kHz, less than a frame
    at 10 fps): the encoder's priming is hidden by the MP4 edit list but the last AAC frame is
    padded with silence.
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
        track = fit_audio(np.clip(audio.astype(np.float32), -1.0, 1.0), sample_rate,
                          frames.shape[0], fps)
        _write_mp4(tmp_name, frames, np.clip(track, -1.0, 1.0), fps, mp4_sample_rate(sample_rate),
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

"""Media I/O with PyAV and numpy only (no torch): probe uploads, decode clips/audio, mux MP4s
(the muxer lives in :mod:`worker.muxing` and is re-exported here).

What the model needs and what this module turns any upload into:

* video: ``uint8 [F, size, size, 3]`` RGB, ``F`` frames at ``fps`` taken from ``start_s`` seconds
  after the start of the container, resampled by timestamps (for every target time
  ``start_s + k / fps`` the source frame whose timestamp is nearest, earlier one on ties), centre
  cropped to a square and resized with an area filter (``libswscale`` AREA);
* audio: ``float32 [T]`` mono at ``sample_rate`` Hz in ``[-1, 1]`` (PyAV ``AudioResampler``: any
  layout is downmixed, any rate resampled), zero-padded when the file ends early.

Times are measured from the start of the stream being decoded (its first timestamp), so a source
already at ``fps`` gives back exactly its own frames ``k, k+1, ...`` even when the muxer shifted
the video a few milliseconds against the audio (the released clips start their video at 69 ms).

Every failure on user input raises :class:`MediaError` (a ``ValueError``) whose ``code`` says what
went wrong (see :data:`ERROR_CODES`); the message says what to do.

Limits (keyword arguments with these documented defaults; the service passes its settings):
``max_bytes`` = :data:`DEFAULT_MAX_BYTES` (512 MiB), ``timeout_s`` = :data:`DEFAULT_TIMEOUT_S`
(60 s wall clock for one probe/decode call; PyAV's interrupt callback also aborts a blocked read),
``max_frames`` = :data:`DEFAULT_MAX_FRAMES` decoded video frames and ``max_samples`` =
:data:`DEFAULT_MAX_SAMPLES` decoded audio samples (per channel, at the file's rate) per decode call;
probing reads at most :data:`PROBE_SIZE_BYTES` bytes and :data:`ANALYZE_DURATION_S` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from worker.muxing import AAC_FRAME_SAMPLES, mux_mp4

__all__ = [
    "AAC_FRAME_SAMPLES", "ERROR_CODES", "MediaError", "MediaInfo", "StreamInfo", "decode_audio",
    "decode_video_clip", "mux_mp4", "probe",
]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_FRAMES = 36_000  # 10 min at 60 fps
DEFAULT_MAX_SAMPLES = 60_000_000  # about 20 min at 48 kHz
DEFAULT_MAX_PIXELS = 4096 * 4096  # per decoded video frame
PROBE_SIZE_BYTES = 5_000_000
ANALYZE_DURATION_S = 5.0

ERROR_CODES: dict[str, str] = {
    "not_found": "the file does not exist",
    "file_too_large": "the file is larger than max_bytes",
    "unsupported_container": "PyAV/FFmpeg cannot open the file as a media container",
    "no_video_stream": "the file has no video stream",
    "no_audio_stream": "the file has no audio stream",
    "decode_failed": "a stream could not be decoded (corrupt or unsupported codec)",
    "clip_too_short": "the clip ends before the requested frames/samples",
    "decode_timeout": "decoding took longer than timeout_s",
    "decode_limit": "reaching the requested span needed more than max_frames/max_samples",
    "frame_too_large": "a video frame has more pixels than max_pixels",
}

PathLike = str | os.PathLike[str]


class MediaError(ValueError):
    """A media file that cannot be used; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown media error code {code!r}; expected one of {sorted(ERROR_CODES)}")
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a container. Video fields are None for audio streams and vice versa."""

    index: int
    type: str  # "video", "audio", "subtitle", "data", ...
    codec: str | None
    duration_s: float | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file without decoding it."""

    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "ogg"
    duration_s: float | None
    size_bytes: int
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        """The first video stream, or None."""
        return next((s for s in self.streams if s.type == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        """The first audio stream, or None."""
        return next((s for s in self.streams if s.type == "audio"), None)


# --------------------------------------------------------------------------------------------
# opening and probing


def _open(path: PathLike, *, max_bytes: int, timeout_s: float) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise MediaError("not_found", f"media file {str(p)!r} does not exist")
    size = p.stat().st_size
    if size > max_bytes:
        raise MediaError(
            "file_too_large",
            f"media file is {size} bytes, more than the limit of {max_bytes} bytes; upload a shorter "
            "or more compressed clip",
        )
    options = {
        "probesize": str(PROBE_SIZE_BYTES),
        "analyzeduration": str(int(ANALYZE_DURATION_S * 1_000_000)),
    }
    try:
        return av.open(str(p), mode="r", options=options, timeout=timeout_s)
    except av.error.ExitError as exc:  # PyAV's interrupt callback: past timeout_s
        raise _timed_out(timeout_s) from exc
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(
            "unsupported_container",
            f"cannot open {p.name!r} as audio/video ({exc}); upload MP4, MOV, MKV, WebM, WAV, MP3, "
            "M4A, FLAC or OGG",
        ) from exc


def _timed_out(timeout_s: float) -> MediaError:
    return MediaError("decode_timeout", f"reading the file took more than {timeout_s:g} s "
                      "(MMD_DECODE_TIMEOUT_S); upload a smaller clip or trim it near start_s")


def _seconds(value: int | None, time_base: object) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _stream_start(stream: av.stream.Stream) -> float:
    start = _seconds(stream.start_time, stream.time_base)
    return 0.0 if start is None else start


def probe(
    path: PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout_s: float = DEFAULT_TIMEOUT_S
) -> MediaInfo:
    """Container format, duration, and per-stream codec/size/rate of ``path`` (no decoding).

    Reads at most :data:`PROBE_SIZE_BYTES` bytes / :data:`ANALYZE_DURATION_S` s of the file.
    Raises :class:`MediaError` (not_found, file_too_large, unsupported_container).
    """
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    with _open(path, max_bytes=max_bytes, timeout_s=timeout_s) as container:
        streams = []
        for s in container.streams:
            ctx = s.codec_context
            info = StreamInfo(
                index=s.index,
                type=s.type,
                codec=_codec_name(ctx),
                duration_s=_seconds(s.duration, s.time_base),
            )
            if s.type == "video":
                rate = s.average_rate or s.guessed_rate
                info = StreamInfo(
                    **{**info.__dict__, "width": ctx.width, "height": ctx.height,
                       "fps": float(rate) if rate else None}
                )
            elif s.type == "audio":
                info = StreamInfo(
                    **{**info.__dict__, "sample_rate": ctx.sample_rate, "channels": ctx.channels}
                )
            streams.append(info)
        duration = None if container.duration is None else container.duration / 1_000_000
        return MediaInfo(
            container=container.format.name, duration_s=duration, size_bytes=size,
            streams=tuple(streams),
        )


# --------------------------------------------------------------------------------------------
# video


def _codec_name(ctx: av.codec.context.CodecContext | None) -> str | None:
    """FFmpeg's canonical codec name ("mp3", "av1"), not the decoder's ("mp3float", "libdav1d")."""
    if ctx is None:
        return None
    try:
        return ctx.codec.canonical_name
    except (AttributeError, av.FFmpegError):
        return ctx.name


def _decode_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: float,
    max_frames: int, timeout_s: float,
) -> Iterator[av.VideoFrame]:
    try:
        for count, frame in enumerate(container.decode(stream), start=1):
            if time.monotonic() > deadline:
                raise MediaError("decode_timeout", "decoding the clip took too long; upload a "
                                 "smaller clip or trim it near start_s")
            if count > max_frames:
                raise MediaError("decode_limit", f"reaching start_s needed more than {max_frames} "
                                 "decoded frames (MMD_MAX_DECODED_FRAMES); trim the clip so the "
                                 "wanted part is near its start")
            yield frame
    except av.error.ExitError as exc:
        raise _timed_out(timeout_s) from exc
    except av.FFmpegError as exc:
        raise MediaError(
            "decode_failed", f"the video stream could not be decoded ({exc}); re-encode the clip "
            "as H.264 MP4"
        ) from exc


def _square_resize(frame: av.VideoFrame, size: int) -> np.ndarray:
    """Centre crop to a square then resize to ``size``: ``uint8 [size, size, 3]`` RGB."""
    rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    if side == size:
        return square
    resized = av.VideoFrame.from_ndarray(square, format="rgb24").reformat(
        width=size, height=size, interpolation="AREA"
    )
    return resized.to_ndarray(format="rgb24")


def decode_video_clip(
    path: PathLike,
    *,
    start_s: float = 0.0,
    num_frames: int = 16,
    fps: int = 10,
    size: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``num_frames`` frames at ``fps`` from ``start_s``: ``uint8 [F, size, size, 3]`` RGB.

    Target time ``k`` is ``start_s + k / fps`` after the stream's first timestamp; each takes the source
    frame nearest in time (the same source frame repeats when the source rate is lower). Frames
    are centre-cropped to a square (pixel aspect ratio and rotation metadata are ignored) and
    resized with an area filter. Only the needed span is decoded (seek to the key frame before
    ``start_s``). Raises :class:`MediaError` (no_video_stream, decode_failed, clip_too_short, ...).
    """
    if num_frames < 1 or fps <= 0 or size < 1 or start_s < 0:
        raise ValueError(
            f"need num_frames >= 1, fps > 0, size >= 1, start_s >= 0; got num_frames={num_frames}, "
            f"fps={fps}, size={size}, start_s={start_s}"
        )
    deadline = time.monotonic() + timeout_s
    with _open(path, max_bytes=max_bytes, timeout_s=timeout_s) as container:
        if not container.streams.video:
            raise MediaError("no_video_stream", "the file has no video stream; upload a video clip")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        if (ctx.width or 0) * (ctx.height or 0) > max_pixels:
            raise MediaError("frame_too_large", f"the video is {ctx.width}x{ctx.height}, more than "
                             f"{max_pixels} pixels a frame; downscale it")
        # FFmpeg refuses, before allocating, any frame whose own headers claim more pixels
        ctx.options = {**ctx.options, "max_pixels": str(max_pixels)}
        origin = _stream_start(stream)
        targets = [origin + start_s + k / fps for k in range(num_frames)]
        if start_s > 0 and stream.time_base is not None:
            try:
                container.seek(int(targets[0] / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:  # unseekable input: decode from the beginning instead
                container.seek(0)
        out: list[np.ndarray] = []
        cache: tuple[int, np.ndarray] | None = None  # (decode index, array): frames may repeat

        def take(index: int, frame: av.VideoFrame) -> None:
            nonlocal cache
            if cache is None or cache[0] != index:
                cache = (index, _square_resize(frame, size))
            out.append(cache[1])

        prev: av.VideoFrame | None = None
        prev_t, prev_i = 0.0, -1
        rate = stream.guessed_rate or stream.average_rate
        frames = _decode_frames(container, stream, deadline, max_frames, timeout_s)
        for i, frame in enumerate(frames):
            if frame.time is not None:
                t = float(frame.time)
            elif rate and start_s == 0:  # no timestamps (raw streams): count frames instead
                t = origin + i / float(rate)
            else:
                continue
            while len(out) < num_frames and t >= targets[len(out)]:
                target = targets[len(out)]
                if prev is None or t - target < target - prev_t:
                    take(i, frame)
                else:
                    take(prev_i, prev)
            if len(out) == num_frames:
                break
            prev, prev_t, prev_i = frame, t, i
        if prev is None and not out:
            raise MediaError("decode_failed", "the video stream has no decodable frames; re-encode it")
        if len(out) < num_frames:
            # Targets after the last decoded frame: valid while it is still on screen.
            frame_dur = _frame_duration(prev, stream, fps)
            end = prev_t + frame_dur
            if targets[-1] >= end:
                raise MediaError(
                    "clip_too_short",
                    f"the clip ends at {end - origin:.2f} s but {num_frames} frames at {fps} fps from "
                    f"start_s={start_s:g} need {start_s + num_frames / fps:.2f} s; upload a longer "
                    "clip or use an earlier start",
                )
            while len(out) < num_frames:
                take(prev_i, prev)
        return np.stack(out)


def _frame_duration(frame: av.VideoFrame | None, stream: av.video.stream.VideoStream, fps: int) -> float:
    if frame is not None and frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    rate = stream.guessed_rate or stream.average_rate
    return 1.0 / float(rate) if rate else 1.0 / fps


# --------------------------------------------------------------------------------------------
# audio


def decode_audio(
    path: PathLike,
    *,
    start_s: float = 0.0,
    num_samples: int = 25600,
    sample_rate: int = 16000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> np.ndarray:
    """Decode ``num_samples`` mono samples at ``sample_rate`` from ``start_s``: ``float32 [T]``.

    Any audio codec/container FFmpeg reads (WAV, MP3, M4A/AAC, FLAC, OGG, the audio track of a
    video). The rate is converted by PyAV's ``AudioResampler``, then channels are averaged; samples
    are placed by their timestamps (holes between frames become silence); values are
    clipped to ``[-1, 1]``; zero-padded at the end when the file is shorter. Raises
    :class:`MediaError` (no_audio_stream, decode_failed, clip_too_short when nothing is left after
    ``start_s``, ...).
    """
    if num_samples < 1 or sample_rate <= 0 or start_s < 0:
        raise ValueError(
            f"need num_samples >= 1, sample_rate > 0, start_s >= 0; got num_samples={num_samples}, "
            f"sample_rate={sample_rate}, start_s={start_s}"
        )
    deadline = time.monotonic() + timeout_s
    with _open(path, max_bytes=max_bytes, timeout_s=timeout_s) as container:
        if not container.streams.audio:
            raise MediaError("no_audio_stream", "the file has no audio stream; upload an audio file")
        stream = container.streams.audio[0]
        origin = _stream_start(stream)
        begin = origin + start_s
        # No seeking: after a seek FFmpeg's MP3-in-MP4 timestamps are off by the decoder delay
        # (256 samples on the released clips), and decoding audio is cheap (88 s of MP3: 0.07 s).
        # Frames that end well before `begin` are dropped before resampling to bound memory.
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout,
                                      rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        have = 0
        needed: int | None = None  # samples to collect from first_time on
        decoded_end: float | None = None  # end time of the last decoded frame

        fed = 0.0  # seconds of input audio fed to the resampler since first_time
        decoded = 0  # samples (per channel) decoded so far
        try:
            for frame in container.decode(stream):
                if time.monotonic() > deadline:
                    raise MediaError("decode_timeout", "decoding the audio took too long; upload "
                                     "less or trim it near start_s")
                decoded += frame.samples
                if decoded > max_samples:
                    raise MediaError("decode_limit", f"reaching start_s needed more than "
                                     f"{max_samples} decoded samples (MMD_MAX_DECODED_SAMPLES); "
                                     "trim the audio so the wanted part is near its start")
                t = float(frame.time) if frame.time is not None else None
                duration = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
                if t is not None:
                    decoded_end = t + duration
                    if first_time is None and decoded_end < begin - 0.5:
                        continue
                if first_time is None:
                    first_time = t if t is not None else origin
                    skip = round((begin - first_time) * sample_rate)
                    needed = max(skip, 0) + num_samples
                gap = 0.0 if t is None else t - (first_time + fed)
                if gap * sample_rate >= 1.0:
                    # A hole in the timestamps (the released clips have 8 ms holes every 1.6 s):
                    # keep samples at their times, as a player does, by filling it with silence.
                    chunks.append(np.zeros(round(gap * sample_rate), np.float32))
                    have += chunks[-1].shape[0]
                    fed += gap
                fed += duration
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                    have += chunks[-1].shape[0]
                if needed is not None and have >= needed:
                    break
            else:
                for out in resampler.resample(None):  # flush
                    chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        except av.error.ExitError as exc:
            raise _timed_out(timeout_s) from exc
        except av.FFmpegError as exc:
            raise MediaError(
                "decode_failed", f"the audio stream could not be decoded ({exc}); re-encode it as "
                "WAV or MP3"
            ) from exc
        if first_time is None and decoded_end is not None:
            raise MediaError(
                "clip_too_short",
                f"the audio ends at {decoded_end - origin:.2f} s, before start_s={start_s:g}; use an "
                "earlier start or a longer file",
            )
        if first_time is None:
            raise MediaError("decode_failed", "the audio stream has no decodable frames; re-encode it")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        skip = round((begin - first_time) * sample_rate)
        if skip < 0:  # the stream starts after `begin`: silence before it
            samples = np.concatenate([np.zeros(-skip, np.float32), samples])
            skip = 0
        if skip >= samples.shape[0]:
            available = (first_time - origin) + samples.shape[0] / sample_rate
            raise MediaError(
                "clip_too_short",
                f"the audio ends at {available:.2f} s, before start_s={start_s:g}; use an earlier "
                "start or a longer file",
            )
        clip = samples[skip : skip + num_samples]
        if clip.shape[0] < num_samples:
            clip = np.concatenate([clip, np.zeros(num_samples - clip.shape[0], np.float32)])
        return np.clip(clip, -1.0, 1.0).astype(np.float32, copy=False)

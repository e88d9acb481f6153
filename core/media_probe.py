"""Opening media files with PyAV under limits, the shared error type, and :func:`probe` (what a
file holds, without decoding). Used by :mod:`worker.media_video`, :mod:`worker.media_audio` and
the gateway's upload check (:mod:`core.probe`); import the public names from
:mod:`worker.media`.

Limits (keyword arguments with these documented defaults; the service passes its settings):
``max_bytes`` = :data:`DEFAULT_MAX_BYTES` (512 MiB), ``timeout_s`` = :data:`DEFAULT_TIMEOUT_S`
(60 s wall clock for one probe/decode call; PyAV's interrupt callback also aborts a blocked read),
``max_frames`` = :data:`DEFAULT_MAX_FRAMES` decoded video frames and ``max_samples`` =
:data:`DEFAULT_MAX_SAMPLES` decoded audio samples (per channel, at the file's rate) per decode call;
probing reads at most :data:`PROBE_SIZE_BYTES` bytes and :data:`ANALYZE_DURATION_S` seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

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
            raise ValueError(
                f"unknown media error code {code!r}; expected one of {sorted(ERROR_CODES)}"
            )
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
            f"media file is {size} bytes, more than the limit of {max_bytes} bytes; "
            "upload a shorter or more compressed clip",
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
    return MediaError(
        "decode_timeout",
        f"reading the file took more than {timeout_s:g} s "
        "(MMD_DECODE_TIMEOUT_S); upload a smaller clip or trim it near start_s",
    )


def _seconds(value: int | None, time_base: Any) -> float | None:
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
            ctx: Any = s.codec_context  # video or audio context (PyAV types it generically)
            info = StreamInfo(
                index=s.index,
                type=s.type,
                codec=_codec_name(ctx),
                duration_s=_seconds(s.duration, s.time_base),
            )
            if s.type == "video":
                rate = s.average_rate or s.guessed_rate
                info = StreamInfo(
                    **{
                        **info.__dict__,
                        "width": ctx.width,
                        "height": ctx.height,
                        "fps": float(rate) if rate else None,
                    }
                )
            elif s.type == "audio":
                info = StreamInfo(
                    **{**info.__dict__, "sample_rate": ctx.sample_rate, "channels": ctx.channels}
                )
            streams.append(info)
        duration = None if container.duration is None else container.duration / 1_000_000
        return MediaInfo(
            container=container.format.name,
            duration_s=duration,
            size_bytes=size,
            streams=tuple(streams),
        )


def _codec_name(ctx: av.codec.context.CodecContext | None) -> str | None:
    """FFmpeg's canonical codec name ("mp3", "av1"), not the decoder's ("mp3float", "libdav1d")."""
    if ctx is None:
        return None
    try:
        return ctx.codec.canonical_name
    except (AttributeError, av.FFmpegError):
        return ctx.name

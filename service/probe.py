"""A cheap check of an upload in the gateway (container headers only, via PyAV; no decoding):
is it readable media, does it have the stream the job needs, is it within the duration limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException


@dataclass(frozen=True)
class UploadInfo:
    duration_s: float | None
    has_video: bool
    has_audio: bool


def probe_upload(path: Path) -> UploadInfo:
    """Read the container headers; 422 if PyAV cannot open it."""
    import av

    try:
        with av.open(str(path)) as container:
            duration = container.duration / 1_000_000 if container.duration else None
            if duration is None:
                durations = [float(s.duration * s.time_base) for s in container.streams
                             if s.duration is not None and s.time_base is not None]
                duration = max(durations) if durations else None
            return UploadInfo(
                duration_s=duration,
                has_video=len(container.streams.video) > 0,
                has_audio=len(container.streams.audio) > 0,
            )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise HTTPException(
            422,
            f"could not read the upload as media ({exc}); send an MP4/MOV/WebM clip for "
            "video-to-audio or a wav/mp3/m4a/flac/ogg file for audio-to-video",
        ) from exc


def check_upload(path: Path, *, need: str, max_duration_s: float) -> UploadInfo:
    """``need`` is "video" or "audio"; raises 422 (wrong/unreadable) or 413 (too long)."""
    info = probe_upload(path)
    if need == "video" and not info.has_video:
        raise HTTPException(422, "the upload has no video stream; video-to-audio needs a clip "
                                 "with video (e.g. an MP4)")
    if need == "audio" and not info.has_audio:
        raise HTTPException(422, "the upload has no audio stream; audio-to-video needs an audio "
                                 "file (wav, mp3, m4a/aac, flac, ogg)")
    if info.duration_s is not None and info.duration_s > max_duration_s:
        raise HTTPException(413, f"the upload lasts {info.duration_s:.1f} s, more than "
                                 f"MMD_MAX_CLIP_DURATION_S={max_duration_s:g} s; trim it first")
    return info

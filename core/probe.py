"""The gateway's check of an upload before anything is enqueued (container headers only; no
decoding beyond what FFmpeg's bounded stream probe does):

1. magic bytes (:mod:`core.sniff`): a known container, allowed for the endpoint (``415``);
2. a bounded PyAV probe (:func:`core.media_probe.probe`: at most 5 MB / 5 s of the file read,
   ``MMD_PROBE_TIMEOUT_S`` of wall clock): readable (``422``), the needed stream present (``422``),
   at most ``MMD_MAX_STREAMS`` streams (``422``), codecs in ``MMD_VIDEO_CODECS`` /
   ``MMD_AUDIO_CODECS`` (``415``), video within ``MMD_MAX_VIDEO_WIDTH`` x ``MMD_MAX_VIDEO_HEIGHT``
   (``413``), sane audio rate/channels (``422``), duration within ``MMD_MAX_CLIP_DURATION_S``
   (``413``).

Every rejection is an :class:`UploadRejected` with a ``code`` from :data:`UPLOAD_ERROR_CODES`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from core.media_probe import MediaError, MediaInfo, probe
from core.settings import Settings
from core.sniff import AUDIO_KINDS, KINDS, SNIFF_BYTES, VIDEO_KINDS, describe, sniff_bytes

Need = Literal["video", "audio", "any"]

UPLOAD_ERROR_CODES: dict[str, tuple[int, str]] = {
    "upload_too_large": (413, "the file is over MMD_MAX_UPLOAD_BYTES"),
    "empty_upload": (422, "the file part is empty"),
    "unsupported_media_type": (415, "the bytes are no known audio/video container"),
    "container_not_allowed": (415, "a container that cannot carry the stream the endpoint needs"),
    "unreadable_media": (422, "FFmpeg cannot open it (truncated, corrupt, missing index)"),
    "probe_timeout": (422, "probing took longer than MMD_PROBE_TIMEOUT_S"),
    "no_video_stream": (422, "video-to-audio needs a video stream"),
    "no_audio_stream": (422, "audio-to-video needs an audio stream"),
    "too_many_streams": (422, "more streams than MMD_MAX_STREAMS"),
    "unsupported_codec": (415, "a codec outside MMD_VIDEO_CODECS / MMD_AUDIO_CODECS"),
    "invalid_video": (422, "a video stream with no usable dimensions"),
    "dimensions_too_large": (413, "video larger than MMD_MAX_VIDEO_WIDTH x MMD_MAX_VIDEO_HEIGHT"),
    "invalid_audio": (422, "0 channels, no rate, or a rate/channel count above the limits"),
    "clip_too_long": (413, "duration over MMD_MAX_CLIP_DURATION_S"),
}


class UploadRejected(Exception):
    """A 4xx for an upload; ``code`` is a key of :data:`UPLOAD_ERROR_CODES` and fixes the HTTP
    ``status_code`` (the gateway answers it through ``service.app``'s handler)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in UPLOAD_ERROR_CODES:
            raise ValueError(f"unknown upload error code {code!r}; expected one of "
                             f"{sorted(UPLOAD_ERROR_CODES)}")
        super().__init__(message)
        self.status_code = UPLOAD_ERROR_CODES[code][0]
        self.detail = message
        self.code = code

    def body(self) -> dict[str, object]:
        """The JSON answer: ``detail`` (like every other 4xx) plus ``error {code, message}``."""
        return {"detail": self.detail, "error": {"code": self.code, "message": self.detail}}


@dataclass(frozen=True)
class UploadInfo:
    kind: str  # a key of core.sniff.KINDS
    duration_s: float | None
    has_video: bool
    has_audio: bool


_HINT = {
    "video": "send an MP4/MOV/MKV/WebM clip with a video stream",
    "audio": "send a WAV, MP3, M4A/AAC, FLAC or OGG file (or a clip with an audio track)",
    "any": "send an MP4/MOV/MKV/WebM clip or a WAV/MP3/M4A/FLAC/OGG file",
}


def check_upload(path: Path, *, need: Need, settings: Settings) -> UploadInfo:
    """Sniff then probe ``path`` for an endpoint that needs a ``need`` stream ("any": only a
    readable, allowed media file). Raises :class:`UploadRejected`."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        raise UploadRejected("empty_upload", "the uploaded file is empty")
    kind = sniff_bytes(head)
    if kind is None:
        raise UploadRejected("unsupported_media_type", f"the upload looks like {describe(head)}, "
                             f"not audio/video; {_HINT[need]}")
    if need == "video" and kind not in VIDEO_KINDS:
        raise UploadRejected("container_not_allowed", f"the upload is {KINDS[kind]}, which holds "
                             f"no video stream; {_HINT['video']}")
    if need == "audio" and kind not in AUDIO_KINDS:  # every known kind can hold audio today
        raise UploadRejected("container_not_allowed", f"{KINDS[kind]} is not accepted here; "
                             f"{_HINT['audio']}")
    info = _probe(path, settings)
    video = [s for s in info.streams if s.type == "video"]
    audio = [s for s in info.streams if s.type == "audio"]
    if need == "video" and not video:
        raise UploadRejected("no_video_stream", "the upload has no video stream; video-to-audio "
                             "needs a clip with video (e.g. an MP4)")
    if need == "audio" and not audio:
        raise UploadRejected("no_audio_stream", "the upload has no audio stream; audio-to-video "
                             "needs an audio file (wav, mp3, m4a/aac, flac, ogg)")
    if need == "any" and not (video or audio):
        raise UploadRejected("unreadable_media", f"the upload has no audio or video stream; "
                             f"{_HINT['any']}")
    if len(info.streams) > settings.max_streams:
        raise UploadRejected("too_many_streams", f"the upload has {len(info.streams)} streams, "
                             f"more than MMD_MAX_STREAMS={settings.max_streams}; keep one video "
                             "and one audio track")
    for s in video:
        _check_codec(s.codec, settings.video_codecs, "video", "MMD_VIDEO_CODECS")
        if not s.width or not s.height:
            raise UploadRejected("invalid_video", f"video stream {s.index} declares no "
                                 f"dimensions ({s.width}x{s.height}); re-encode the clip")
        if s.width > settings.max_video_width or s.height > settings.max_video_height:
            raise UploadRejected(
                "dimensions_too_large", f"video stream {s.index} is {s.width}x{s.height}, over "
                f"MMD_MAX_VIDEO_WIDTH x MMD_MAX_VIDEO_HEIGHT = {settings.max_video_width}x"
                f"{settings.max_video_height}; downscale it (the model uses 64x64 anyway)")
    for s in audio:
        _check_codec(s.codec, settings.audio_codecs, "audio", "MMD_AUDIO_CODECS")
        rate, channels = s.sample_rate or 0, s.channels or 0
        if not 0 < rate <= settings.max_audio_sample_rate or not 0 < channels <= \
                settings.max_audio_channels:
            raise UploadRejected(
                "invalid_audio", f"audio stream {s.index} declares {channels} channels at "
                f"{rate} Hz; expected 1..{settings.max_audio_channels} channels "
                f"(MMD_MAX_AUDIO_CHANNELS) at 1..{settings.max_audio_sample_rate} Hz "
                "(MMD_MAX_AUDIO_SAMPLE_RATE)")
    duration = info.duration_s
    durations = [s.duration_s for s in info.streams if s.duration_s is not None]
    if durations:
        duration = max([duration or 0.0, *durations])
    if duration is not None and duration > settings.max_clip_duration_s:
        raise UploadRejected("clip_too_long", f"the upload lasts {duration:.1f} s, more than "
                             f"MMD_MAX_CLIP_DURATION_S={settings.max_clip_duration_s:g} s; "
                             "trim it first")
    return UploadInfo(kind=kind, duration_s=duration, has_video=bool(video),
                      has_audio=bool(audio))


def _check_codec(codec: str | None, allowed: list[str], what: str, setting: str) -> None:
    if codec is None or not any(fnmatchcase(codec, pattern) for pattern in allowed):
        raise UploadRejected("unsupported_codec", f"the {what} codec {codec or 'unknown'!r} is "
                             f"not accepted; allowed ({setting}): {', '.join(allowed)}; "
                             "re-encode the file")


def _probe(path: Path, settings: Settings) -> MediaInfo:
    started = time.monotonic()
    try:
        info = probe(path, max_bytes=settings.max_upload_bytes, timeout_s=settings.probe_timeout_s)
    except MediaError as exc:
        if exc.code == "decode_timeout" or time.monotonic() - started >= settings.probe_timeout_s:
            raise UploadRejected("probe_timeout", f"reading the upload's headers took more than "
                                 f"MMD_PROBE_TIMEOUT_S={settings.probe_timeout_s:g} s") from exc
        raise UploadRejected("unreadable_media", f"could not read the upload as media "
                             f"({exc}); it may be truncated or corrupt: re-encode or re-send "
                             "it") from exc
    except Exception as exc:
        raise UploadRejected("unreadable_media", f"could not read the upload as media "
                             f"({type(exc).__name__}: {exc})") from exc
    if time.monotonic() - started > settings.probe_timeout_s:
        raise UploadRejected("probe_timeout", f"reading the upload's headers took more than "
                             f"MMD_PROBE_TIMEOUT_S={settings.probe_timeout_s:g} s")
    return info

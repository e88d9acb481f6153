"""The gateway's check of an upload before anything is enqueued (container headers only; no
decoding beyond what FFmpeg's bounded stream probe does):

1. magic bytes (:mod:`core.sniff`): a known container, allowed for the endpoint (``415``);
2. a bounded PyAV probe (:func:`core.media_probe.probe`: at most 5 MB / 5 s of the file read,
   ``MMD_PROBE_TIMEOUT_S`` of wall clock): readable (``422``), the needed stream present (``422``),
   at most ``MMD_MAX_STREAMS`` streams (``422``), duration within ``MMD_MAX_CLIP_DURATION_S``
   (``413``);
3. the stream the endpoint uses, and only that one (the first video stream for video-to-audio,
   the first audio stream for audio-to-video; an OGG with Theora video is fine for
   audio-to-video): its codec in ``MMD_VIDEO_CODECS`` / ``MMD_AUDIO_CODECS`` (``415``), video
   within ``MMD_MAX_VIDEO_WIDTH`` x ``MMD_MAX_VIDEO_HEIGHT`` (``413``) and at least
   ``MMD_MIN_VIDEO_SIDE`` on its shorter side (``422``), sane audio rate/channels (``422``), and
   from ``start_s`` at least ``MMD_MIN_CLIP_DURATION_S`` of it left (:func:`check_span`, ``422``).
   ``POST /uploads`` ("any") keeps a file when one of its first video / first audio stream
   passes and records which are usable (and why the other is not).

Every rejection is an :class:`UploadRejected` with a ``code`` from :data:`UPLOAD_ERROR_CODES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from core.media_probe import MediaError, MediaInfo, StreamInfo, probe
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
    "video_too_small": (422, "video smaller than MMD_MIN_VIDEO_SIDE on its shorter side"),
    "invalid_audio": (422, "0 channels, no rate, or a rate/channel count above the limits"),
    "clip_too_long": (413, "duration over MMD_MAX_CLIP_DURATION_S"),
    "clip_too_short": (422, "less than MMD_MIN_CLIP_DURATION_S of the stream left from start_s"),
    "start_past_end": (422, "start_s at or after the end of the stream"),
    "span_past_end": (422, "start_s + duration_s past the end of the stream"),
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
    """What the gateway learned of an accepted upload. ``has_video`` / ``has_audio``: a stream of
    that kind the service can use (``*_problem`` says why one that is present cannot be used);
    ``*_duration_s``: that stream's own duration (else the container's)."""

    kind: str  # a key of core.sniff.KINDS
    duration_s: float | None
    has_video: bool
    has_audio: bool
    video_duration_s: float | None = None
    audio_duration_s: float | None = None
    video_problem: str | None = None
    audio_problem: str | None = None


_HINT = {
    "video": "send an MP4/MOV/MKV/WebM clip with a video stream",
    "audio": "send a WAV, MP3, M4A/AAC, FLAC or OGG file (or a clip with an audio track)",
    "any": "send an MP4/MOV/MKV/WebM clip or a WAV/MP3/M4A/FLAC/OGG file",
}


def check_upload(path: Path, *, need: Need, settings: Settings,
                 start_s: float = 0.0, span_s: float | None = None) -> UploadInfo:
    """Sniff then probe ``path`` for an endpoint that needs a ``need`` stream from ``start_s``
    ("any": a readable, allowed media file with a usable video or audio stream; its span is
    checked when it is used, see :func:`check_span`). Raises :class:`UploadRejected`."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        raise UploadRejected("empty_upload", "the uploaded file is empty")
    kind = sniff_bytes(head)
    if kind is None:
        raise UploadRejected("unsupported_media_type", f"the upload is not a supported audio/"
                             f"video file: {describe(head)}; {_HINT[need]}")
    if need == "video" and kind not in VIDEO_KINDS:
        raise UploadRejected("container_not_allowed", f"the upload is {KINDS[kind]}, which holds "
                             f"no video stream; {_HINT['video']}")
    if need == "audio" and kind not in AUDIO_KINDS:  # every known kind can hold audio today
        raise UploadRejected("container_not_allowed", f"{KINDS[kind]} is not accepted here; "
                             f"{_HINT['audio']}")
    info = _probe(path, settings)
    video, audio = info.video, info.audio
    if need == "video" and video is None:
        raise UploadRejected("no_video_stream", "the upload has no video stream; video-to-audio "
                             "needs a clip with video (e.g. an MP4)")
    if need == "audio" and audio is None:
        raise UploadRejected("no_audio_stream", "the upload has no audio stream; audio-to-video "
                             "needs an audio file (wav, mp3, m4a/aac, flac, ogg)")
    if need == "any" and video is None and audio is None:
        raise UploadRejected("unreadable_media", f"the upload has no audio or video stream; "
                             f"{_HINT['any']}")
    if len(info.streams) > settings.max_streams:
        raise UploadRejected("too_many_streams", f"the upload has {len(info.streams)} streams, "
                             f"more than MMD_MAX_STREAMS={settings.max_streams}; keep one video "
                             "and one audio track")
    duration = info.duration_s
    durations = [s.duration_s for s in info.streams if s.duration_s is not None]
    if durations:
        duration = max([duration or 0.0, *durations])
    if duration is not None and duration > settings.max_clip_duration_s:
        raise UploadRejected("clip_too_long", f"the upload lasts {duration:.1f} s, more than "
                             f"MMD_MAX_CLIP_DURATION_S={settings.max_clip_duration_s:g} s; "
                             "trim it first")
    video_s = _stream_duration(video, info)
    audio_s = _stream_duration(audio, info)
    problems: dict[str, UploadRejected] = {}
    checks: tuple[tuple[str, StreamInfo | None, Callable[[StreamInfo, Settings], None]], ...] = (
        ("video", video, _check_video), ("audio", audio, _check_audio))
    for what, stream, check in checks:
        if stream is None or need not in (what, "any"):
            continue  # a stream the endpoint does not use is not judged
        try:
            check(stream, settings)
        except UploadRejected as exc:
            if need != "any":
                raise
            problems[what] = exc
    if need == "any" and len(problems) == sum(s is not None for s in (video, audio)):
        raise next(iter(problems.values()))  # nothing usable: the first stream's reason
    if need == "video":
        check_span(video_s, start_s, settings, what="video", span_s=span_s)
    elif need == "audio":
        check_span(audio_s, start_s, settings, what="audio", span_s=span_s)
    return UploadInfo(
        kind=kind, duration_s=duration,
        has_video=video is not None and "video" not in problems,
        has_audio=audio is not None and "audio" not in problems,
        video_duration_s=video_s, audio_duration_s=audio_s,
        video_problem=problems["video"].detail if "video" in problems else None,
        audio_problem=problems["audio"].detail if "audio" in problems else None)


def check_span(duration_s: float | None, start_s: float, settings: Settings, *,
               what: str = "clip", span_s: float | None = None) -> None:
    """``422`` unless at least ``MMD_MIN_CLIP_DURATION_S`` of a ``duration_s`` long stream is
    left from ``start_s``: ``start_past_end`` when ``start_s`` is at or after its end,
    ``clip_too_short`` when less is left, ``span_past_end`` when a job's ``span_s`` (its
    ``duration_s``) runs past the end. An unknown duration (raw streams) passes: the worker
    finds out. Less than the model's window is padded (``result.input.padded_s``)."""
    if duration_s is None:
        return
    if span_s is not None and start_s < duration_s and \
            start_s + span_s > duration_s + _SPAN_SLACK_S:
        left = duration_s - start_s
        raise UploadRejected("span_past_end", f"duration_s={span_s:g} from start_s={start_s:g} "
                             f"runs past the end of the {what}, which lasts {duration_s:.2f} s; "
                             f"send a duration_s of at most {left:.2f} s")
    minimum = settings.min_clip_duration_s
    latest = max(duration_s - minimum, 0.0)
    if start_s > 0 and start_s >= duration_s:
        fix = f"send a start_s from 0 to {latest:.2f} s" if duration_s >= minimum else \
            f"send a clip of at least MMD_MIN_CLIP_DURATION_S={minimum:g} s"
        raise UploadRejected("start_past_end", f"start_s={start_s:g} is past the end of the "
                             f"{what}, which lasts {duration_s:.2f} s; {fix}")
    left = duration_s - start_s
    if left + _DURATION_SLACK_S < minimum:
        where = f"the {what} lasts {duration_s:.2f} s" if start_s == 0 else \
            f"from start_s={start_s:g} only {left:.2f} s of the {duration_s:.2f} s {what} are left"
        fix = "send a longer clip" if start_s == 0 or duration_s < minimum else \
            f"use a start_s of at most {latest:.2f} s or a longer clip"
        raise UploadRejected("clip_too_short", f"{where}, less than the minimum "
                             f"MMD_MIN_CLIP_DURATION_S={minimum:g} s; {fix} (a clip shorter than "
                             "the model's window is padded and the result says so)")


_DURATION_SLACK_S = 0.002  # container/stream durations are rounded to their time base
# a duration_s may reach past the stream's stated end by half a model frame (1/20 s): the job
# covers whole frames at the model's 10 fps, and a "12 s" upload may state 11.98 s
_SPAN_SLACK_S = 0.05


def _stream_duration(stream: StreamInfo | None, info: MediaInfo) -> float | None:
    if stream is None:
        return None
    return stream.duration_s if stream.duration_s is not None else info.duration_s


def _check_video(s: StreamInfo, settings: Settings) -> None:
    _check_codec(s.codec, settings.video_codecs, "video", "MMD_VIDEO_CODECS")
    if not s.width or not s.height:
        raise UploadRejected("invalid_video", f"video stream {s.index} declares no "
                             f"dimensions ({s.width}x{s.height}); re-encode the clip")
    if s.width > settings.max_video_width or s.height > settings.max_video_height:
        raise UploadRejected(
            "dimensions_too_large", f"video stream {s.index} is {s.width}x{s.height}, over "
            f"MMD_MAX_VIDEO_WIDTH x MMD_MAX_VIDEO_HEIGHT = {settings.max_video_width}x"
            f"{settings.max_video_height}; downscale it (the model uses 64x64 anyway)")
    if min(s.width, s.height) < settings.min_video_side:
        raise UploadRejected(
            "video_too_small", f"video stream {s.index} is {s.width}x{s.height} pixels, under "
            f"MMD_MIN_VIDEO_SIDE={settings.min_video_side} px on its shorter side; send a "
            "larger clip (its centre square is scaled to the model's frame size)")


def _check_audio(s: StreamInfo, settings: Settings) -> None:
    _check_codec(s.codec, settings.audio_codecs, "audio", "MMD_AUDIO_CODECS")
    rate, channels = s.sample_rate or 0, s.channels or 0
    if not 0 < rate <= settings.max_audio_sample_rate or not 0 < channels <= \
            settings.max_audio_channels:
        raise UploadRejected(
            "invalid_audio", f"audio stream {s.index} declares {channels} channels at "
            f"{rate} Hz; expected 1..{settings.max_audio_channels} channels "
            f"(MMD_MAX_AUDIO_CHANNELS) at 1..{settings.max_audio_sample_rate} Hz "
            "(MMD_MAX_AUDIO_SAMPLE_RATE)")


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

"""Media I/O with PyAV and numpy only (no torch): probe uploads, decode clips/audio, mux MP4s
(the muxer lives in :mod:`worker.muxing` and is re-exported here).

What the model needs and what this module turns any upload into:

* video: ``uint8 [F, size, size, 3]`` RGB, ``F`` frames at ``fps`` taken from ``start_s`` seconds
  after the start of the container, resampled by timestamps (for every target time
  ``start_s + k / fps`` the source frame whose timestamp is nearest, earlier one on ties), turned
  to the orientation a player shows (the display matrix's rotation and mirroring,
  :mod:`worker.orientation`), centre cropped to a square and resized with an area filter
  (``libswscale`` AREA);
* audio: ``float32 [T]`` mono at ``sample_rate`` Hz in ``[-1, 1]`` (PyAV ``AudioResampler``: any
  rate resampled; more than two channels downmixed with the standard matrix, centre and
  surrounds at -3 dB, LFE dropped), zero-padded when the file ends early.

``decode_video_input`` / ``decode_audio_input`` also say how the input was read (orientation,
displayed size, channel layout, ``padded_s``) for the job's result; ``decode_video_clip`` /
``decode_audio`` return only the array.

Times are measured from the start of the stream being decoded (its first timestamp), so a source
already at ``fps`` gives back exactly its own frames ``k, k+1, ...`` even when the muxer shifted
the video a few milliseconds against the audio (the released clips start their video at 69 ms).

Every failure on user input raises :class:`MediaError` (a ``ValueError``) whose ``code`` says what
went wrong (see :data:`ERROR_CODES`); the message says what to do.

Limits are keyword arguments with documented defaults (:mod:`core.media_probe`); the service
passes its settings.

This module is the public face; the work is split by job: :mod:`core.media_probe` (opening under
limits, errors, probing), :mod:`worker.media_video` (video clips), :mod:`worker.media_audio`
(audio) and :mod:`worker.muxing` (writing MP4s).
"""

from __future__ import annotations

from core.media_probe import (
    ANALYZE_DURATION_S,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SAMPLES,
    DEFAULT_TIMEOUT_S,
    ERROR_CODES,
    PROBE_SIZE_BYTES,
    MediaError,
    MediaInfo,
    PathLike,
    StreamInfo,
    probe,
)
from worker.media_audio import DecodedAudio, decode_audio, decode_audio_input
from worker.media_video import DecodedVideo, decode_video_clip, decode_video_input
from worker.muxing import AAC_FRAME_SAMPLES, mp4_sample_rate, mux_mp4, resample
from worker.orientation import Orientation

__all__ = [
    "AAC_FRAME_SAMPLES", "ANALYZE_DURATION_S", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_SAMPLES", "DEFAULT_TIMEOUT_S", "ERROR_CODES",
    "PROBE_SIZE_BYTES", "DecodedAudio", "DecodedVideo", "MediaError", "MediaInfo", "Orientation",
    "PathLike", "StreamInfo", "decode_audio", "decode_audio_input", "decode_video_clip",
    "decode_video_input", "mp4_sample_rate", "mux_mp4", "probe", "resample",
]

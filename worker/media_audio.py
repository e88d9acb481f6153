"""Decoding audio for the model: ``float32 [T]`` mono at ``sample_rate`` Hz from ``start_s``,
placed by timestamps, downmixed with a standard matrix, zero-padded at the end (see
:mod:`worker.media`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import av
import numpy as np

from core.media_probe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    DEFAULT_TIMEOUT_S,
    MediaError,
    PathLike,
    _open,
    _stream_start,
    _timed_out,
)


@dataclass(frozen=True)
class DecodedAudio:
    """What :func:`decode_audio_input` read: ``samples float32 [T]`` mono, the source's channel
    ``layout`` (FFmpeg name, e.g. "5.1") and ``padded_s``, the seconds of silence added after
    the end of the file to fill the window."""

    samples: np.ndarray
    layout: str
    padded_s: float = 0.0


def _downmix_layout(layout: av.AudioLayout) -> str | av.AudioLayout:
    """What the resampler converts to before the channels are averaged.

    Mono and stereo stay as they are (mono: unit gain; stereo: the mean of left and right).
    More channels go to stereo through libswresample's standard matrix (ITU-R BS.775: centre and
    surrounds at -3 dB into each side, LFE dropped), so the mean is ``0.5 (L + R) + 0.707 C +
    0.354 (Ls + Rs)``: a centre-only voice is 3 dB below the same voice sent as mono (a plain
    mean of six channels, LFE included, was 15.6 dB below).
    """
    return "stereo" if layout.nb_channels > 2 else layout


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
    """Decode ``num_samples`` mono samples at ``sample_rate`` from ``start_s``: ``float32 [T]``
    (:func:`decode_audio_input`'s ``samples``)."""
    return decode_audio_input(
        path, start_s=start_s, num_samples=num_samples, sample_rate=sample_rate,
        max_bytes=max_bytes, timeout_s=timeout_s, max_samples=max_samples).samples


def decode_audio_input(
    path: PathLike,
    *,
    start_s: float = 0.0,
    num_samples: int = 25600,
    sample_rate: int = 16000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> DecodedAudio:
    """Decode ``num_samples`` mono samples at ``sample_rate`` from ``start_s`` (``float32 [T]``)
    and say how (:class:`DecodedAudio`).

    Any audio codec/container FFmpeg reads (WAV, MP3, M4A/AAC, FLAC, OGG, the audio track of a
    video). The rate is converted by PyAV's ``AudioResampler`` (more than two channels are
    downmixed to stereo with the standard matrix, :func:`_downmix_layout`), then the channels are
    averaged; samples are placed by their timestamps (holes between frames become silence);
    values are clipped to ``[-1, 1]``; zero-padded at the end when the file is shorter
    (``padded_s``). Raises
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
            raise MediaError("no_audio_stream",
                             "the file has no audio stream; upload an audio file")
        stream = container.streams.audio[0]
        origin = _stream_start(stream)
        begin = origin + start_s
        # No seeking: after a seek FFmpeg's MP3-in-MP4 timestamps are off by the decoder delay
        # (256 samples on the released clips), and decoding audio is cheap (88 s of MP3: 0.07 s).
        # Frames that end well before `begin` are dropped before resampling to bound memory.
        layout = stream.codec_context.layout
        resampler = av.AudioResampler(format="fltp", layout=_downmix_layout(layout),
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
                f"the audio ends at {decoded_end - origin:.2f} s, before start_s={start_s:g}; "
                "use an "
                "earlier start or a longer file",
            )
        if first_time is None:
            raise MediaError(
                "decode_failed", "the audio stream has no decodable frames; re-encode it"
            )
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
        missing = num_samples - clip.shape[0]
        if missing > 0:
            clip = np.concatenate([clip, np.zeros(missing, np.float32)])
        return DecodedAudio(samples=np.clip(clip, -1.0, 1.0).astype(np.float32, copy=False),
                            layout=layout.name, padded_s=round(max(missing, 0) / sample_rate, 3))

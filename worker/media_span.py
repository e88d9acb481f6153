"""A video-to-audio whole-clip result: the user's own picture over the covered span, with the
generated soundtrack (PyAV, no torch).

**Stream copy where it is exact, else re-encode (decided).** When the span is the whole video
stream (``start_s`` 0 and ``round(duration_s * fps)`` equal to the stream's frame count) and its
codec may live in MP4 (:data:`COPY_CODECS`), the video packets are copied as they are (no
quality loss, no encoding time). Otherwise the span is re-encoded: a span from ``start_s``
almost never starts on a key frame, a cut before the end may drop frames that B-frames inside
the span reference, and an MP4 edit list that hides the frames around it is honoured unevenly
by players (browsers show them, or start on a grey frame). The re-encode decodes the span and
writes H.264 (libx264, ``crf`` 18, yuv420p) at the source's own width, height and frame rate
(its average rate): every source frame whose time is in ``[start_s, start_s + duration_s)``
once, nothing resampled, one frame in memory at a time; odd sizes are padded by one edge
row/column (yuv420p).

**Orientation: the display matrix travels, the pixels stay as stored (decided).** A phone's
portrait clip is stored landscape with a display matrix that rotates it (``worker.orientation``).
A stream copy keeps the stream's matrix (``add_stream_from_template`` copies the codec
parameters and their side data); a re-encode writes the source's matrix, read from its first
decoded frame, to the output stream unchanged (PyAV's ``set_display_matrix``), so both show as
the source did, any matrix included (an arbitrary angle too). Rotating the pixels instead would
cost a conversion per frame and change the copy's and the re-encode's stored size apart.
:class:`SpanVideo` reports the size as displayed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.media_probe import MediaError, PathLike, _open, _stream_start
from worker.muxing import AAC_FRAME_SAMPLES
from worker.orientation import IDENTITY, Orientation, frame_display_matrix, orientation_from_matrix

# video codecs whose packets an MP4 can carry as they are
COPY_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})


@dataclass(frozen=True)
class SpanVideo:
    """What :func:`reencode_span` wrote: ``frames`` at ``fps`` (the source's rate), ``width`` x
    ``height`` as displayed (the source's stored size, even for a re-encode, turned by the
    display matrix the file carries, ``orientation``), ``held`` frames repeated at the end
    because the source ended early (within the gateway's slack); ``copied``: the video packets
    were stream-copied."""

    width: int
    height: int
    fps: Fraction
    frames: int
    held: int = 0
    copied: bool = False
    orientation: Orientation = IDENTITY

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.fps)


def reencode_span(src: PathLike, out_path: Path, *, start_s: float, duration_s: float,
                  audio: np.ndarray, sample_rate: int, max_frames: int, timeout_s: float,
                  max_bytes: int, crf: int = 18, audio_bitrate: int = 64_000) -> SpanVideo:
    """Write ``out_path`` (MP4): the first video stream of ``src`` from ``start_s`` for
    ``duration_s`` seconds (``round(duration_s * fps)`` frames), re-encoded at its own geometry
    and rate with its display matrix, plus ``audio float32 [T]`` (mono, ``sample_rate``) as AAC.
    ``max_frames`` bounds the source frames decoded (``decode_limit``), ``timeout_s`` the wall
    clock (``decode_timeout``)."""
    deadline = time.monotonic() + timeout_s
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _open(src, max_bytes=max_bytes, timeout_s=timeout_s) as inp:
        if not inp.streams.video:
            raise MediaError("no_video_stream", "the file has no video stream; upload a video")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate
        if not rate or rate <= 0:
            raise MediaError("decode_failed", "the video stream states no frame rate; "
                             "re-encode it with a constant frame rate")
        fps = Fraction(rate).limit_denominator(1001 * 1000)
        wanted = max(1, round(duration_s * fps))
        matrix = _source_matrix(inp, vin)
        orientation = orientation_from_matrix(matrix)
        if start_s == 0 and vin.codec_context.name in COPY_CODECS:
            count = _packets(inp, vin, max_frames, deadline)
            inp.seek(0)
            if count == wanted:
                return _copy(inp, vin, out_path, fps, wanted, audio, sample_rate, audio_bitrate,
                             orientation)
        origin = _stream_start(vin)
        half = float(1 / fps) / 2
        if start_s > 0 and vin.time_base is not None:
            try:
                inp.seek(int((origin + start_s) / vin.time_base), stream=vin, backward=True)
            except av.FFmpegError:
                inp.seek(0)
        width, height = vin.codec_context.width, vin.codec_context.height
        with av.open(str(out_path), mode="w", format="mp4",
                     options={"movflags": "+faststart"}) as out:
            vs = out.add_stream("libx264", rate=fps, options={"crf": str(crf),
                                                             "preset": "medium"})
            vs.width, vs.height = width + width % 2, height + height % 2
            vs.pix_fmt = "yuv420p"
            vs.codec_context.time_base = 1 / fps
            if matrix is not None:
                vs.set_display_matrix([int(v) for v in matrix])
            ast = out.add_stream("aac", rate=sample_rate, layout="mono")
            ast.bit_rate = audio_bitrate
            written, decoded, last = 0, 0, None
            for frame in inp.decode(vin):
                decoded += 1
                if decoded > max_frames:
                    raise MediaError("decode_limit", f"reaching the span took more than "
                                     f"{max_frames} decoded frames (MMD_MAX_DECODED_FRAMES); "
                                     "use a smaller start_s or re-encode the clip")
                if time.monotonic() > deadline:
                    raise MediaError("decode_timeout", f"re-encoding the span took more than "
                                     f"{timeout_s:g} s (MMD_DECODE_TIMEOUT_S)")
                t = (frame.time if frame.time is not None else 0.0) - origin
                if t < start_s - half:
                    continue
                last = _even(frame, width, height)
                _encode(out, vs, last, written)
                written += 1
                if written == wanted:
                    break
            if last is None:
                raise MediaError("clip_too_short", f"the video has no frame after "
                                 f"start_s={start_s:g}; use a smaller start_s")
            held = wanted - written
            for i in range(written, wanted):  # the source ended within the submit slack
                _encode(out, vs, last, i)
            out.mux(vs.encode(None))
            _write_audio(out, ast, np.clip(np.asarray(audio, np.float32), -1.0, 1.0),
                         sample_rate)
    shown = _displayed(width + width % 2, height + height % 2, orientation)
    return SpanVideo(*shown, fps=fps, frames=wanted, held=held, orientation=orientation)


def _source_matrix(inp: av.container.InputContainer, vin: av.VideoStream) -> np.ndarray | None:
    """The display matrix of ``vin``'s first decoded frame (None: none); rewinds to 0 after."""
    try:
        first = next(inp.decode(vin), None)
    finally:
        inp.seek(0)
    return None if first is None else frame_display_matrix(first)


def _displayed(width: int, height: int, orientation: Orientation) -> tuple[int, int]:
    """Stored ``width`` x ``height`` as a player shows them under ``orientation``."""
    return (height, width) if orientation.transpose else (width, height)


def _packets(inp: av.container.InputContainer, vin: av.VideoStream, max_frames: int,
             deadline: float) -> int:
    """Video packets (= frames) of ``vin``, counted without decoding; -1 past the limits."""
    count = 0
    for packet in inp.demux(vin):
        if packet.size == 0:
            continue
        count += 1
        if count > max_frames or time.monotonic() > deadline:
            return -1
    return count


def _copy(inp: av.container.InputContainer, vin: av.VideoStream, out_path: Path, fps: Fraction,
          frames: int, audio: np.ndarray, sample_rate: int, audio_bitrate: int,
          orientation: Orientation) -> SpanVideo:
    """Every video packet of ``vin`` copied into ``out_path`` with ``audio`` as AAC (the stream's
    display matrix, ``orientation``, comes with its codec parameters)."""
    with av.open(str(out_path), mode="w", format="mp4",
                 options={"movflags": "+faststart"}) as out:
        vs = out.add_stream_from_template(vin)
        ast = out.add_stream("aac", rate=sample_rate, layout="mono")
        ast.bit_rate = audio_bitrate
        for packet in inp.demux(vin):
            if packet.size == 0 or packet.dts is None:
                continue
            packet.stream = vs
            out.mux(packet)
        # the copied video keeps its own start time (e.g. 69 ms after the container's start):
        # the soundtrack, generated for the frames from that start, begins there too
        _write_audio(out, ast, np.clip(np.asarray(audio, np.float32), -1.0, 1.0), sample_rate,
                     offset=round(_stream_start(vin) * sample_rate))
    ctx = vin.codec_context
    return SpanVideo(*_displayed(ctx.width, ctx.height, orientation), fps=fps, frames=frames,
                     copied=True, orientation=orientation)


def _even(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` as yuv420p, padded to even sides by repeating the last row/column."""
    if width % 2 == 0 and height % 2 == 0:
        return frame.reformat(format="yuv420p")
    rgb: np.ndarray = frame.to_ndarray(format="rgb24")
    rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _encode(out: av.container.OutputContainer, vs: av.VideoStream, frame: av.VideoFrame,
            index: int) -> None:
    frame.pts = index
    frame.time_base = vs.codec_context.time_base
    out.mux(vs.encode(frame))


def _write_audio(out: av.container.OutputContainer, ast: av.AudioStream, audio: np.ndarray,
                 sample_rate: int, offset: int = 0) -> None:
    size = ast.codec_context.frame_size or AAC_FRAME_SAMPLES
    for start in range(0, audio.shape[0], size):
        af = av.AudioFrame.from_ndarray(audio[start:start + size].reshape(1, -1), format="fltp",
                                        layout="mono")
        af.sample_rate = sample_rate
        af.pts = offset + start
        out.mux(ast.encode(af))
    out.mux(ast.encode(None))

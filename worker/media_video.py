"""Decoding a video clip for the model: ``uint8 [F, size, size, 3]`` RGB frames at ``fps`` from
``start_s``, resampled by timestamps, turned to their displayed orientation (rotation / mirror
of the display matrix, :mod:`worker.orientation`), centre-cropped and area-resized (see
:mod:`worker.media`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from core.media_probe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT_S,
    MediaError,
    PathLike,
    _open,
    _stream_start,
    _timed_out,
)
from worker.orientation import IDENTITY, Orientation, frame_orientation


@dataclass(frozen=True)
class DecodedVideo:
    """What :func:`decode_video_input` read: the clip and how it was made.

    ``frames uint8 [F, size, size, 3]``; ``width`` x ``height`` is the source frame as displayed
    (after ``orientation``); ``padded_s`` the seconds of the window after the clip's end, filled
    by holding its last frame (``pad_end=True`` only).
    """

    frames: np.ndarray
    orientation: Orientation
    width: int
    height: int
    padded_s: float = 0.0


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


def _square_resize(frame: av.VideoFrame, size: int, orientation: Orientation) -> np.ndarray:
    """Turn to the displayed orientation, centre crop to a square, resize to ``size``:
    ``uint8 [size, size, 3]`` RGB."""
    rgb = orientation.apply(frame.to_ndarray(format="rgb24"))
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side], dtype=np.uint8)
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

    :func:`decode_video_input`'s ``frames`` with ``pad_end=False``: a clip that ends before
    the window raises ``clip_too_short``.
    """
    return decode_video_input(
        path, start_s=start_s, num_frames=num_frames, fps=fps, size=size, max_bytes=max_bytes,
        timeout_s=timeout_s, max_frames=max_frames, max_pixels=max_pixels).frames


def decode_video_input(
    path: PathLike,
    *,
    start_s: float = 0.0,
    num_frames: int = 16,
    fps: int = 10,
    size: int = 64,
    pad_end: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedVideo:
    """Decode ``num_frames`` frames at ``fps`` from ``start_s`` (``frames uint8 [F, size, size,
    3]`` RGB) and say how (:class:`DecodedVideo`).

    Target time ``k`` is ``start_s + k / fps`` after the stream's first timestamp; each takes the
    source frame nearest in time (the same source frame repeats when the source rate is lower).
    Each frame is turned as a player shows it (its display matrix: rotation by 90/180/270 degrees
    and mirroring; pixel aspect ratio is ignored), centre-cropped to a square and resized with an
    area filter. Only the needed span is decoded (seek to the key frame before ``start_s``).
    When the clip ends before the last target, ``pad_end`` holds its last frame (reported as
    ``padded_s``); otherwise that is ``clip_too_short``. Raises :class:`MediaError`
    (no_video_stream, decode_failed, clip_too_short, ...).
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
            raise MediaError(
                "frame_too_large",
                f"the video is {ctx.width}x{ctx.height}, more than "
                f"{max_pixels} pixels a frame; downscale it",
            )
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
        shown: tuple[Orientation, int, int] | None = None  # of the first frame taken

        def take(index: int, frame: av.VideoFrame) -> None:
            nonlocal cache, shown
            if cache is None or cache[0] != index:
                orientation = frame_orientation(frame)
                if shown is None:
                    w, h = (frame.height, frame.width) if orientation.transpose else \
                        (frame.width, frame.height)
                    shown = (orientation, w, h)
                cache = (index, _square_resize(frame, size, orientation))
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
            raise MediaError(
                "decode_failed", "the video stream has no decodable frames; re-encode it"
            )
        padded_s = 0.0
        if len(out) < num_frames:
            # Targets after the last decoded frame: valid while it is still on screen.
            frame_dur = _frame_duration(prev, stream, fps)
            end = prev_t + frame_dur
            if targets[-1] >= end and (not pad_end or (not out and targets[0] >= end)):
                raise MediaError(
                    "clip_too_short",
                    f"the clip ends at {end - origin:.2f} s but {num_frames} frames at {fps} fps "
                    f"from start_s={start_s:g} need {start_s + num_frames / fps:.2f} s; "
                    "upload a longer "
                    "clip or use an earlier start",
                )
            padded_s = max(0.0, targets[0] + num_frames / fps - end)
            assert prev is not None  # a frame was decoded (checked above)
            while len(out) < num_frames:
                assert prev is not None  # the loop above took at least one frame
                take(prev_i, prev)
        orientation, width, height = shown if shown is not None else (IDENTITY, 0, 0)
        return DecodedVideo(frames=np.stack(out), orientation=orientation, width=width,
                            height=height, padded_s=round(padded_s, 3))


def _frame_duration(
    frame: av.VideoFrame | None, stream: av.video.stream.VideoStream, fps: int
) -> float:
    if frame is not None and frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    rate = stream.guessed_rate or stream.average_rate
    return 1.0 / float(rate) if rate else 1.0 / fps

"""The window plan for clips longer than the model window, and the crossfade weights that join
overlapping windows.

A clip of ``duration_s`` seconds is covered by windows of the model's length (``window_frames``
video frames and ``window_samples`` audio samples, from the U-Net config) that overlap by at
least ``overlap_frames`` frames. Everything is planned in whole video frames, and each audio
window starts at the sample of its first frame, so the two modalities stay aligned:

* the span is quantised to whole frames: ``frames = round(duration_s * fps)`` and
  ``samples = frames * sample_rate / fps`` (rounded), so both streams last exactly as long;
* the window must span the same time in both modalities:
  ``window_samples * fps == window_frames * sample_rate`` (a preset whose geometry disagrees
  with the fps / sample rate passed in is rejected);
* **the last partial window** is never padded: ``n`` = the fewest windows whose stride is at
  most ``window_frames - overlap_frames``, and their starts are spread evenly over
  ``[0, frames - window_frames]`` (``start_k = round(k * (frames - window_frames) / (n - 1))``).
  That is "shift the last window back to end at the clip end" with the shift shared by every
  joint: every window holds real content, the clip end is met exactly, every overlap is at
  least the requested one and overlaps differ by at most one frame (shifting only the last
  window back would leave one joint with an overlap of up to ``window_frames - 1`` frames and
  possibly three windows over one frame). Padding would feed the model a made-up condition
  (frozen frames, silence) that it then tries to be in sync with;
* **a clip shorter than one window** is the one case that pads: one window, the condition is
  padded at the end (``pad_frames`` / ``pad_samples``; the generator repeats the last frame or
  appends silence) and the output is cut back to the clip.

Crossfade: :func:`crossfade_weights` gives each window a weight along time that ramps up (raised
cosine) over its overlap with the previous window and down over the overlap with the next one;
:func:`stitch` joins window outputs as ``sum_k w_k x_k / sum_k w_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

__all__ = ["Window", "WindowPlan", "crossfade_weights", "plan_windows", "stitch"]


@dataclass(frozen=True)
class Window:
    """One model window: frames ``[frame_start, frame_end)``, samples ``[sample_start,
    sample_end)`` of the clip (half-open; ``frame_end - frame_start`` is the model's window
    length less ``pad_frames``). ``overlap_*``: how much of its start it shares with the
    previous window (0 for the first)."""

    index: int
    frame_start: int
    frame_end: int
    sample_start: int
    sample_end: int
    overlap_frames: int
    overlap_samples: int
    pad_frames: int = 0
    pad_samples: int = 0


@dataclass(frozen=True)
class WindowPlan:
    """Windows covering a clip of ``frames`` frames and ``samples`` samples (see module doc)."""

    frames: int
    samples: int
    window_frames: int
    window_samples: int
    fps: float
    sample_rate: int
    windows: tuple[Window, ...]

    @property
    def count(self) -> int:
        return len(self.windows)

    @property
    def duration_s(self) -> float:
        """The covered span in seconds (whole frames)."""
        return self.frames / self.fps

    def sample_of(self, frame: int) -> int:
        """The audio sample (clip units) at which ``frame`` starts."""
        return _sample_of(frame, self.fps, self.sample_rate)

    def joints(self) -> list[tuple[int, int]]:
        """``(sample_start, sample_end)`` of each overlap between consecutive windows."""
        return [(b.sample_start, a.sample_end) for a, b in pairwise(self.windows)]


def _sample_of(frame: int, fps: float, sample_rate: int) -> int:
    """The audio sample at which ``frame`` starts (rounded half up)."""
    return math.floor(frame * sample_rate / fps + 0.5)


def plan_windows(
    duration_s: float, *, window_frames: int, window_samples: int, overlap_frames: int,
    fps: float, sample_rate: int,
) -> WindowPlan:
    """The windows covering ``duration_s`` seconds (see the module docstring for the rules).

    :param window_frames, window_samples: the model window (``UNetConfig.video_size[0]``,
        ``UNetConfig.audio_size[1]``).
    :param overlap_frames: least overlap of consecutive windows, ``0 <= overlap < window``.
    :param fps, sample_rate: the model's frame rate and audio sample rate.
    """
    if window_frames < 1 or window_samples < 1:
        raise ValueError(f"window must have >= 1 frame and sample; got {window_frames} frames, "
                         f"{window_samples} samples")
    if not fps > 0 or sample_rate < 1:
        raise ValueError(f"fps and sample_rate must be positive; got {fps}, {sample_rate}")
    if abs(window_samples * fps - window_frames * sample_rate) > 1e-6 * window_samples * fps:
        raise ValueError(
            f"the model window is {window_frames} frames at {fps} fps = "
            f"{window_frames / fps:.4f} s but {window_samples} samples at {sample_rate} Hz = "
            f"{window_samples / sample_rate:.4f} s; pass the fps and sample rate the model was "
            "trained at (its preset's media geometry)")
    if not 0 <= overlap_frames < window_frames:
        raise ValueError(f"overlap_frames must be in [0, {window_frames}) (the window is "
                         f"{window_frames} frames); got {overlap_frames}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds; got {duration_s}")
    frames = max(1, math.floor(duration_s * fps + 0.5))
    samples = _sample_of(frames, fps, sample_rate)
    if frames <= window_frames:
        pad = window_frames - frames
        return WindowPlan(frames, samples, window_frames, window_samples, fps, sample_rate, (
            Window(0, 0, frames, 0, samples, 0, 0, pad, window_samples - samples),))
    stride = window_frames - overlap_frames
    n = 1 + math.ceil((frames - window_frames) / stride)
    span = frames - window_frames
    starts = [(2 * k * span + (n - 1)) // (2 * (n - 1)) for k in range(n)]  # round half up
    windows = []
    for k, start in enumerate(starts):
        s0 = _sample_of(start, fps, sample_rate)
        prev_end = starts[k - 1] + window_frames if k else start
        windows.append(Window(
            index=k, frame_start=start, frame_end=start + window_frames, sample_start=s0,
            sample_end=s0 + window_samples, overlap_frames=prev_end - start,
            overlap_samples=(_sample_of(prev_end, fps, sample_rate) - s0) if k else 0,
        ))
    return WindowPlan(frames, samples, window_frames, window_samples, fps, sample_rate,
                      tuple(windows))


def _ramp(n: int) -> Tensor:
    """Raised-cosine ramp of ``n`` values rising from ~0 to ~1 (float64, never exactly 0)."""
    i = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)


def crossfade_weights(plan: WindowPlan, modality: str) -> list[Tensor]:
    """Per-window weights along time (float64 ``[window_frames]`` or ``[window_samples]``):
    1 inside the window, a raised-cosine ramp up over the overlap with the previous window and
    down over the overlap with the next one. In a two-window overlap the weights sum to 1."""
    if modality not in ("video", "audio"):
        raise ValueError(f"modality must be 'video' or 'audio'; got {modality!r}")
    length = plan.window_frames if modality == "video" else plan.window_samples
    out = []
    ws = plan.windows
    for k, w in enumerate(ws):
        weight = torch.ones(length, dtype=torch.float64)
        head = w.overlap_frames if modality == "video" else w.overlap_samples
        if head:
            weight[:head] *= _ramp(head)
        if k + 1 < len(ws):
            nxt = ws[k + 1]
            tail = nxt.overlap_frames if modality == "video" else nxt.overlap_samples
            if tail:
                weight[length - tail:] *= _ramp(tail).flip(0)
        out.append(weight)
    return out


def stitch(plan: WindowPlan, pieces: Sequence[Tensor], modality: str) -> Tensor:
    """Join window outputs with the crossfade weights.

    ``pieces[k]``: video ``[B, F, C, H, W]`` or audio ``[B, C, L]`` at the model's window length
    (a padded single window is cut back). Returns video ``[B, frames, C, H, W]`` or audio
    ``[B, C, samples]`` in the pieces' dtype.
    """
    if len(pieces) != plan.count:
        raise ValueError(f"got {len(pieces)} window outputs for a plan of {plan.count} windows")
    dim = 1 if modality == "video" else -1
    total = plan.frames if modality == "video" else plan.samples
    if plan.count == 1:
        return pieces[0].narrow(dim, 0, total)
    first = pieces[0]
    shape = list(first.shape)
    shape[dim] = total
    acc = torch.zeros(shape, dtype=torch.float64, device=first.device)
    norm = torch.zeros(total, dtype=torch.float64, device=first.device)
    weights = crossfade_weights(plan, modality)
    for w, piece, weight in zip(plan.windows, pieces, weights, strict=False):
        start = w.frame_start if modality == "video" else w.sample_start
        weight = weight.to(first.device)
        view = [1] * piece.dim()
        view[dim] = weight.shape[0]
        acc.narrow(dim, start, weight.shape[0]).add_(piece.double() * weight.reshape(view))
        norm[start:start + weight.shape[0]] += weight
    view = [1] * first.dim()
    view[dim] = total
    return (acc / norm.reshape(view)).to(first.dtype)

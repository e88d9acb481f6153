"""The model window as the gateway knows it (no torch): how long one window of a model preset
lasts and how many windows a ``duration_s`` job runs, so that ``MMD_MAX_WINDOWS`` is enforced
at submit.

The network geometry itself is the model's (``model.config.UNetConfig.preset``: ``video_size``
frames, ``fps``, ``audio_size`` samples, ``sample_rate``); :data:`WINDOWS` holds, per preset, the
two numbers the gateway needs: frames of one window and its frame rate (the gateway may not
import the model; ``tests/core/test_windows.py`` checks the table against the model configs and
:func:`window_count` against ``model.windows.plan_windows``, which it mirrors). A window lasts
``frames / fps`` seconds (official: 16 frames at 10 fps = 1.6 s; demo: 8 at 8 fps = 1 s), and a
``duration_s`` span is planned in whole frames at the preset's fps (:func:`clip_frames`).

:func:`span_sample_rate` is the one rule for the audio rate a whole clip is planned at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowGeometry:
    """One model window: ``frames`` video frames at ``fps`` frames per second."""

    frames: int
    fps: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


# U-Net preset name (lower case) -> its window (UNetConfig.preset(name): video_size[0], fps)
WINDOWS: dict[str, WindowGeometry] = {
    "landscape": WindowGeometry(16, 10), "aist++": WindowGeometry(16, 10),
    "aist": WindowGeometry(16, 10), "official": WindowGeometry(16, 10),
    "tiny": WindowGeometry(8, 10), "demo": WindowGeometry(8, 8),
}


def window_geometry(preset: str) -> WindowGeometry | None:
    """The window of U-Net ``preset``; None for a preset this table does not know (the worker
    then enforces ``MMD_MAX_WINDOWS`` itself, when it plans the job)."""
    return WINDOWS.get(preset.lower())


def window_frames(preset: str) -> int | None:
    """Frames of one window of ``preset`` (None: unknown preset)."""
    geometry = window_geometry(preset)
    return None if geometry is None else geometry.frames


def window_s(preset: str) -> float | None:
    """Seconds of one window of ``preset`` (None: unknown preset)."""
    geometry = window_geometry(preset)
    return None if geometry is None else geometry.seconds


def clip_frames(duration_s: float, fps: int) -> int:
    """Frames a ``duration_s`` span is planned in at ``fps`` (rounded half up, at least 1)."""
    return max(1, math.floor(duration_s * fps + 0.5))


def span_sample_rate(frames: int, samples: int, fps: int, sample_rate: int) -> int | None:
    """The audio rate a whole clip of a model with windows of ``frames`` frames at ``fps`` and
    ``samples`` samples is planned at: the model's declared ``sample_rate`` when its window spans
    as long in both modalities (``samples / sample_rate == frames / fps``: every released model,
    demo), else the rate that does (``samples * fps / frames``; the golden ``tiny`` preset keeps
    the official 16 kHz for parity with its recorded outputs although its 2048 samples last
    0.128 s, so its whole clips run at 2560 Hz, 0.8 s a window). None when that rate is not a
    whole number (such a model cannot run ``duration_s`` jobs)."""
    if samples * fps == frames * sample_rate:
        return sample_rate
    if (samples * fps) % frames:
        return None
    return samples * fps // frames


def default_overlap(frames: int) -> int:
    """The least window overlap the worker plans with (``model.whole_clip.default_overlap``)."""
    return max(1, frames // 4)


def window_count(duration_s: float, preset: str) -> int | None:
    """Model windows a ``duration_s`` job of ``preset`` runs with the default overlap (what
    ``result.windows`` will say); None for an unknown preset."""
    geometry = window_geometry(preset)
    if geometry is None:
        return None
    frames = geometry.frames
    total = clip_frames(duration_s, geometry.fps)
    if total <= frames:
        return 1
    stride = frames - default_overlap(frames)
    return 1 + math.ceil((total - frames) / stride)


def is_one_window(duration_s: float | None, preset: str) -> bool:
    """True when a job runs today's single-window pipeline: no ``duration_s``, or exactly one
    window of ``preset`` (to the frame)."""
    geometry = window_geometry(preset)
    return duration_s is None or (geometry is not None and
                                  clip_frames(duration_s, geometry.fps) == geometry.frames)

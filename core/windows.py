"""The model window as the gateway knows it (no torch): how long one window of a model preset
lasts and how many windows a ``duration_s`` job runs, so that ``MMD_MAX_WINDOWS`` is enforced
at submit.

The network geometry itself is the model's (``model.config.UNetConfig.preset``: ``video_size``
frames, ``audio_size`` samples); :data:`WINDOW_FRAMES` is its frame count per preset, the one
number the gateway needs (``tests/core/test_windows.py`` checks it against the model configs
and :func:`window_count` against ``model.windows.plan_windows``, which it mirrors: the gateway
may not import the model). Every released model runs at :data:`FPS` frames per second, so a
window lasts ``frames / FPS`` seconds (official: 16 frames = 1.6 s).
"""

from __future__ import annotations

import math

FPS = 10  # frame rate of every released model (model.pipeline_types.FPS)

# U-Net preset name (lower case) -> frames of its window (UNetConfig.preset(name).video_size[0])
WINDOW_FRAMES: dict[str, int] = {
    "landscape": 16, "aist++": 16, "aist": 16, "official": 16, "tiny": 8,
}


def window_frames(preset: str) -> int | None:
    """Frames of one window of U-Net ``preset``; None for a preset this table does not know
    (the worker then enforces ``MMD_MAX_WINDOWS`` itself, when it plans the job)."""
    return WINDOW_FRAMES.get(preset.lower())


def window_s(preset: str) -> float | None:
    """Seconds of one window of ``preset`` (None: unknown preset)."""
    frames = window_frames(preset)
    return None if frames is None else frames / FPS


def clip_frames(duration_s: float) -> int:
    """Frames a ``duration_s`` span is planned in (rounded half up, at least 1)."""
    return max(1, math.floor(duration_s * FPS + 0.5))


def default_overlap(frames: int) -> int:
    """The least window overlap the worker plans with (``model.whole_clip.default_overlap``)."""
    return max(1, frames // 4)


def window_count(duration_s: float, preset: str) -> int | None:
    """Model windows a ``duration_s`` job of ``preset`` runs with the default overlap (what
    ``result.windows`` will say); None for an unknown preset."""
    frames = window_frames(preset)
    if frames is None:
        return None
    total = clip_frames(duration_s)
    if total <= frames:
        return 1
    stride = frames - default_overlap(frames)
    return 1 + math.ceil((total - frames) / stride)


def is_one_window(duration_s: float | None, preset: str) -> bool:
    """True when a job runs today's single-window pipeline: no ``duration_s``, or exactly one
    window of ``preset`` (to the frame)."""
    frames = window_frames(preset)
    return duration_s is None or (frames is not None and clip_frames(duration_s) == frames)

"""The demo world: coloured squares flash and every flash sounds the tone that names its colour.

A clip of ``F`` frames (``fps`` frames per second, ``S x S`` pixels) with a mono soundtrack
(``sample_rate`` Hz, ``sample_rate / fps`` samples per frame). Events follow each other without
overlapping: the first starts at frame 0..2, each lasts ``EVENT_FRAMES`` (2) frames and is
followed by a gap of 1..3 silent, black frames, so a 1 s window of 8 frames holds 1-3 events and
a long clip about one event per 0.5 s. During an event:

* picture: one square of side ``S * U(0.38, 0.56)`` (6-9 px at 16 px), at a uniform random
  position, in one of three pure colours (red, green, blue) on a black background;
* sound: a sine tone of the colour's pitch (``PITCH_FRACTIONS`` of the sample rate: red 1/8,
  green 3/16, blue 1/4, i.e. 256, 384, 512 Hz at 2048 Hz: C4, G4, C5), amplitude
  ``TONE_AMPLITUDE``, random phase, raised-cosine ramps of 1/16 frame at both ends. Silence
  (exact zeros) otherwise.

Everything is drawn from an explicit ``torch.Generator``; a clip is a pure function of its seed and
geometry. Tensors: ``video [B, F, 3, H, W]`` in ``[-1, 1]``, ``audio [B, 1, T]`` in ``[-1, 1]``
(raw; the trainer multiplies by the model's ``audio_scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "COLOURS",
    "EVENT_FRAMES",
    "PITCH_FRACTIONS",
    "TONE_AMPLITUDE",
    "Event",
    "Geometry",
    "draw_events",
    "pitches_hz",
    "render",
    "render_clip",
    "sample_batch",
]

COLOURS: tuple[tuple[float, float, float], ...] = ((1.0, -1.0, -1.0), (-1.0, 1.0, -1.0),
                                                   (-1.0, -1.0, 1.0))  # red, green, blue
COLOUR_NAMES = ("red", "green", "blue")
PITCH_FRACTIONS = (1 / 8, 3 / 16, 1 / 4)  # of the sample rate, per colour
TONE_AMPLITUDE = 0.5
EVENT_FRAMES = 2
FIRST_START_MAX = 2  # first event starts at frame 0..2
GAP_MIN, GAP_MAX = 1, 3  # silent frames between events
SIDE_MIN, SIDE_MAX = 0.38, 0.56  # square side as a fraction of the frame size


@dataclass(frozen=True)
class Geometry:
    """Media geometry of a clip: frames, frame rate, frame size (square), audio sample rate."""

    frames: int
    fps: int
    size: int
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(f"sample_rate {self.sample_rate} must be a multiple of fps "
                             f"{self.fps} (a whole number of audio samples per frame)")
        if min(self.frames, self.fps, self.size, self.sample_rate) < 1:
            raise ValueError(f"geometry values must be >= 1; got {self}")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def audio_length(self) -> int:
        return self.frames * self.samples_per_frame


@dataclass(frozen=True)
class Event:
    """One flash: frames ``[start, start + EVENT_FRAMES)``, colour index (0 red, 1 green, 2 blue),
    square top-left corner and side as fractions of the frame size, tone phase in radians."""

    start: int
    colour: int
    x: float
    y: float
    side: float
    phase: float


def pitches_hz(sample_rate: int) -> tuple[float, float, float]:
    """The three tone frequencies (Hz) at ``sample_rate``, in colour order."""
    return tuple(f * sample_rate for f in PITCH_FRACTIONS)  # type: ignore[return-value]


def _uniform(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def draw_events(frames: int, g: torch.Generator) -> list[Event]:
    """The events of one clip of ``frames`` frames (see module docstring), in time order."""
    events = []
    t = _randint(g, 0, FIRST_START_MAX)
    while t + EVENT_FRAMES <= frames:
        side = _uniform(g, SIDE_MIN, SIDE_MAX)
        events.append(Event(start=t, colour=_randint(g, 0, 2), x=_uniform(g, 0, 1 - side),
                            y=_uniform(g, 0, 1 - side), side=side,
                            phase=_uniform(g, 0, 2 * math.pi)))
        t += EVENT_FRAMES + _randint(g, GAP_MIN, GAP_MAX)
    return events


def render(events: list[Event], geo: Geometry) -> tuple[Tensor, Tensor]:
    """``video [F, 3, S, S]`` in ``[-1, 1]`` and ``audio [1, T]`` (raw, peak TONE_AMPLITUDE)."""
    s, spf = geo.size, geo.samples_per_frame
    video = torch.full((geo.frames, 3, s, s), -1.0)
    audio = torch.zeros(1, geo.audio_length)
    n = EVENT_FRAMES * spf
    i = torch.arange(n, dtype=torch.float64)
    ramp_len = max(1, spf // 16)
    ramp = torch.ones(n, dtype=torch.float64)
    edge = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp_len, dtype=torch.float64) + 0.5)
                                 / ramp_len)
    ramp[:ramp_len] = edge
    ramp[n - ramp_len:] = edge.flip(0)
    for ev in events:
        side = max(1, round(ev.side * s))
        x0, y0 = min(round(ev.x * s), s - side), min(round(ev.y * s), s - side)
        colour = torch.tensor(COLOURS[ev.colour]).view(3, 1, 1)
        stop = min(ev.start + EVENT_FRAMES, geo.frames)
        video[ev.start:stop, :, y0:y0 + side, x0:x0 + side] = colour
        freq = PITCH_FRACTIONS[ev.colour]  # cycles per sample
        tone = TONE_AMPLITUDE * ramp * torch.sin(2 * math.pi * freq * i + ev.phase)
        a = ev.start * spf
        b = min(a + n, geo.audio_length)
        audio[0, a:b] = tone[: b - a].to(torch.float32)
    return video, audio


def sample_batch(batch: int, geo: Geometry, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch`` training clips: ``video [B, F, 3, S, S]`` in ``[-1, 1]``, ``audio [B, 1, T]``
    raw (multiply by the model's ``audio_scale`` for training)."""
    clips = [render(draw_events(geo.frames, g), geo) for _ in range(batch)]
    return torch.stack([v for v, _ in clips]), torch.stack([a for _, a in clips])


def render_clip(seed: int, geo: Geometry, seconds: float | None = None) -> tuple[Tensor, Tensor]:
    """One clip from ``seed``: ``video [F', 3, S, S]``, ``audio [1, T']`` (raw, ``[-1, 1]``).

    ``seconds``: length (default one model window, ``geo.frames / geo.fps``); rounded to whole
    frames. The first ``geo.frames`` frames of a longer clip are not the same as the default
    window's (the events are drawn for the whole length)."""
    frames = geo.frames if seconds is None else max(1, round(seconds * geo.fps))
    long_geo = Geometry(frames=frames, fps=geo.fps, size=geo.size, sample_rate=geo.sample_rate)
    g = torch.Generator().manual_seed(int(seed))
    return render(draw_events(frames, g), long_geo)

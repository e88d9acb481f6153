"""Quality of audio-video pairs of the demo world: synchrony and colour-pitch agreement.

* **sync**: Pearson correlation, over all frames of all clips, between each frame's visual
  activity (mean over pixels of the brightest channel, ``(x + 1) / 2``) and its audio energy
  (RMS of the frame's ``sample_rate / fps`` samples). Real clips score about 1, shuffled pairs
  about 0.
* **colour-pitch**: events are the runs of consecutive frames where the picture or the sound is
  active (activity > ``ACTIVITY_ON`` or RMS > ``RMS_ON``, a third of a real event's level); per
  event the colour seen is the channel with the most light over the run and the pitch heard the
  tone (of :data:`model.demo.world.PITCH_FRACTIONS`) with the most energy over the run; the score
  is the fraction of events where they name the same colour (chance 1/3). A run where one
  modality is silent or dark scores by luck, so missing or spurious events cost agreement.
* **prompt share** (:func:`prompt_share`, for prompt guidance): the share of those events whose
  colour (and pitch) is the prompted one; about 1/3 unguided.

Inputs: ``video [N, F, 3, H, W]`` float in ``[-1, 1]`` (any frame size: base or SR output) and the
waveform ``audio [N, T]`` or ``[N, 1, T]`` in ``[-1, 1]`` (raw, not the model's scaled audio),
``T = F * samples_per_frame``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.demo.world import PITCH_FRACTIONS

__all__ = [
    "ACTIVITY_ON",
    "RMS_ON",
    "PromptShare",
    "Quality",
    "colour_mass",
    "colour_pitch",
    "evaluate",
    "frame_activity",
    "frame_rms",
    "frames_to_model",
    "prompt_share",
    "sync",
    "tone_energy",
]

ACTIVITY_ON = 0.05  # a real event lights 14-31 % of the frame
RMS_ON = 0.1  # a real tone frame has RMS ~0.33


@dataclass(frozen=True)
class Quality:
    """Scores of a set of clips; ``lit`` = mean visual activity, ``rms`` = audio RMS (to check
    that samples have the data's statistics: real clips about 0.07 and 0.24)."""

    sync: float
    colour_pitch: float
    events: int
    lit: float
    rms: float


def _audio2d(audio: Tensor) -> Tensor:
    if audio.dim() == 3:
        if audio.shape[1] != 1:
            raise ValueError(f"audio must be mono [N, 1, T] or [N, T]; got {list(audio.shape)}")
        audio = audio[:, 0]
    if audio.dim() != 2:
        raise ValueError(f"audio must be [N, T] or [N, 1, T]; got {list(audio.shape)}")
    return audio.double()


def frame_activity(video: Tensor) -> Tensor:
    """``[N, F]``: mean over pixels of the brightest channel of ``video [N, F, 3, H, W]``."""
    return ((video.double() + 1) / 2).clamp(0, 1).amax(dim=2).mean(dim=(2, 3))


def colour_mass(video: Tensor) -> Tensor:
    """``[N, F, 3]``: light per channel, summed over pixels (``(x + 1) / 2`` clamped)."""
    return ((video.double() + 1) / 2).clamp(0, 1).sum(dim=(3, 4))


def _frames_of(audio: Tensor, frames: int) -> Tensor:
    a = _audio2d(audio)
    n, t = a.shape
    if t % frames:
        raise ValueError(f"audio length {t} is not a whole number of samples per frame for "
                         f"{frames} frames")
    return a.reshape(n, frames, t // frames)


def frame_rms(audio: Tensor, frames: int) -> Tensor:
    """``[N, F]``: RMS of each frame's samples."""
    return _frames_of(audio, frames).square().mean(dim=2).sqrt()


def tone_energy(audio: Tensor, frames: int, rate_ratio: float = 1.0) -> Tensor:
    """``[N, F, 3]``: energy of each frame's samples at each pitch (squared magnitude of the
    projection on ``exp(-2 pi i f n)``, ``f = PITCH_FRACTIONS * rate_ratio`` cycles per sample;
    ``rate_ratio`` = the world's sample rate / the audio's, for resampled audio)."""
    x = _frames_of(audio, frames)
    spf = x.shape[2]
    n = torch.arange(spf, dtype=torch.float64)
    out = []
    for f in (p * rate_ratio for p in PITCH_FRACTIONS):
        c = (x * torch.cos(2 * math.pi * f * n)).sum(-1)
        s = (x * torch.sin(2 * math.pi * f * n)).sum(-1)
        out.append(c.square() + s.square())
    return torch.stack(out, dim=-1)


def sync(video: Tensor, audio: Tensor) -> float:
    """Pearson correlation of per-frame activity and audio RMS over all frames of all clips
    (0 when either is constant)."""
    act = frame_activity(video).flatten()
    rms = frame_rms(audio, video.shape[1]).flatten()
    act, rms = act - act.mean(), rms - rms.mean()
    denom = float(act.norm() * rms.norm())
    return float((act * rms).sum()) / denom if denom > 0 else 0.0


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, on in enumerate(active):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(active)))
    return runs


def colour_pitch(video: Tensor, audio: Tensor, rate_ratio: float = 1.0) -> tuple[float, int]:
    """``(agreement, events)``: fraction of events whose colour and pitch agree (NaN if none);
    ``rate_ratio`` as in :func:`tone_energy`."""
    frames = video.shape[1]
    act = frame_activity(video).numpy()
    rms = frame_rms(audio, frames).numpy()
    mass = colour_mass(video).numpy()
    tones = tone_energy(audio, frames, rate_ratio).numpy()
    hits, events = 0, 0
    for i in range(video.shape[0]):
        for a, b in _runs((act[i] > ACTIVITY_ON) | (rms[i] > RMS_ON)):
            events += 1
            hits += int(mass[i, a:b].sum(0).argmax() == tones[i, a:b].sum(0).argmax())
    return (hits / events if events else float("nan")), events


@dataclass(frozen=True)
class PromptShare:
    """Of ``events`` events (runs as in :func:`colour_pitch`): the share whose colour seen is
    the prompted one (``colour``), whose pitch heard is (``pitch``), and both (``both``). A run
    where the picture is dark (no frame over ``ACTIVITY_ON``) has no colour, a silent one (no
    frame over ``RMS_ON``) no pitch: neither counts as the prompted one (chance 1/3 each)."""

    colour: float
    pitch: float
    both: float
    events: int


def prompt_share(video: Tensor, audio: Tensor, target: int, rate_ratio: float = 1.0
                 ) -> PromptShare:
    """Share of events in colour / pitch ``target`` (0 red, 1 green, 2 blue; see
    :class:`PromptShare`) of ``video [N, F, 3, H, W]``, ``audio [N, T]``; NaN without events."""
    frames = video.shape[1]
    act = frame_activity(video).numpy()
    rms = frame_rms(audio, frames).numpy()
    mass = colour_mass(video).numpy()
    tones = tone_energy(audio, frames, rate_ratio).numpy()
    colour = pitch = both = events = 0
    for i in range(video.shape[0]):
        lit, loud = act[i] > ACTIVITY_ON, rms[i] > RMS_ON
        for a, b in _runs(lit | loud):
            events += 1
            c = bool(lit[a:b].any()) and int(mass[i, a:b].sum(0).argmax()) == target
            p = bool(loud[a:b].any()) and int(tones[i, a:b].sum(0).argmax()) == target
            colour, pitch, both = colour + c, pitch + p, both + (c and p)
    if not events:
        return PromptShare(math.nan, math.nan, math.nan, 0)
    return PromptShare(colour / events, pitch / events, both / events, events)


def evaluate(video: Tensor, audio: Tensor, rate_ratio: float = 1.0) -> Quality:
    """All scores of clips ``video [N, F, 3, H, W]``, ``audio [N, T]`` (see module docstring).
    ``rate_ratio``: the world's sample rate / the audio's (e.g. 2048 / 16000 for a decoded
    ``mmd demo-clip`` MP4); 1 for audio at the model's rate."""
    if video.dim() != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be [N, F, 3, H, W]; got {list(video.shape)}")
    if video.shape[0] != _audio2d(audio).shape[0]:
        raise ValueError(f"video has {video.shape[0]} clips, audio {_audio2d(audio).shape[0]}")
    cp, events = colour_pitch(video, audio, rate_ratio)
    return Quality(sync=sync(video, audio), colour_pitch=cp, events=events,
                   lit=float(frame_activity(video).mean()),
                   rms=float(_audio2d(audio).square().mean().sqrt()))


def frames_to_model(frames: np.ndarray) -> Tensor:
    """``uint8 [N, F, H, W, 3]`` (pipeline output) -> float ``[N, F, 3, H, W]`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32) / 127.5 - 1.0
    return x.permute(0, 1, 4, 2, 3)

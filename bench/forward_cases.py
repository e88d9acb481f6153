"""Shared pieces of the forward benchmarks (``bench/unet_forward.py``, ``bench/gpu_check.py``):
one network forward with fixed inputs, its FLOP count, and a device-synchronising clock.

>>> case = ForwardCase.build("sr", "official", "cuda", batch=16)   # random weights, seed 0
>>> out = case.run()                                                # [16, 6, 256, 256]
>>> count_flops("sr", "official")                                   # FLOP of one frame

``name`` is ``"base"`` (the coupled U-Net: ``video [B, F, C, H, W]``, ``audio [B, C, L]``, one
forward returns ``(video, audio)``) or ``"sr"`` (the SR U-Net: ``x [B, 3, H, W]``, ``low_res
[B, 3, h, w]`` -> ``[B, 6, H, W]``); ``preset`` is the ``UNetConfig`` / ``SRConfig`` preset.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from model import build_sr, build_unet
from model.config import SRConfig, UNetConfig

__all__ = ["ForwardCase", "clock", "count_flops", "sync"]

WEIGHT_SEED = 0  # random weights: timing and parity do not depend on their values


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (no-op elsewhere)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def clock(device: str | torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work has finished."""
    sync(device)
    return time.perf_counter()


@dataclass
class ForwardCase:
    """A network and the fixed inputs of one forward (``run()``); built once, run many times."""

    name: str
    model: nn.Module
    args: tuple[Tensor, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, name: str, preset: str, device: str | torch.device, *, batch: int = 1,
              seed: int = 0, fixed_shifts: bool = False) -> ForwardCase:
        """Random weights (torch seed ``WEIGHT_SEED``), inputs from a CPU generator seeded
        ``seed`` (so equal on every device). ``fixed_shifts``: the base model's window shifts are
        all 0 (the same on every device; needed on ``meta`` and for parity), else drawn per
        call from a seeded generator as in the pipeline."""
        dev = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(WEIGHT_SEED)
            with torch.device(dev):
                model = (build_unet(UNetConfig.preset(preset)) if name == "base"
                         else build_sr(SRConfig.preset(preset)))
        return cls(name, model.requires_grad_(False), *_inputs(name, preset, dev, batch, seed,
                                                                fixed_shifts or dev.type == "meta"))

    def to(self, device: str | torch.device) -> ForwardCase:
        """A copy of the model and inputs on ``device`` (weights equal to this one's)."""
        dev = torch.device(device)
        kwargs = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in self.kwargs.items()}
        return ForwardCase(self.name, copy.deepcopy(self.model).to(dev),
                           tuple(a.to(dev) for a in self.args), kwargs)

    def run(self) -> Tensor | tuple[Tensor, Tensor]:
        """One forward (no autograd graph)."""
        kwargs = dict(self.kwargs)
        if "generator" in kwargs:  # a fresh generator per call: every call draws the same shifts
            kwargs["generator"] = torch.Generator().manual_seed(kwargs["generator"].initial_seed())
        with torch.inference_mode():
            return self.model(*self.args, **kwargs)

    @property
    def batch(self) -> int:
        return int(self.args[0].shape[0])


def _inputs(name: str, preset: str, device: torch.device, batch: int, seed: int,
            fixed_shifts: bool) -> tuple[tuple[Tensor, ...], dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    t = torch.full((batch,), 500.0, device=device)
    if name == "base":
        cfg = UNetConfig.preset(preset)
        video = torch.randn(batch, *cfg.video_size, generator=gen).to(device)
        audio = torch.randn(batch, *cfg.audio_size, generator=gen).to(device)
        if fixed_shifts:
            calls = build_unet_calls(cfg)
            return (video, audio, t), {"window_shifts": [0] * calls}
        return (video, audio, t), {"generator": torch.Generator().manual_seed(seed)}
    if name == "sr":
        sr = SRConfig.preset(preset)
        x = torch.randn(batch, 3, sr.large_size, sr.large_size, generator=gen).to(device)
        low = torch.randn(batch, 3, sr.small_size, sr.small_size, generator=gen).to(device)
        return (x, t, low), {}
    raise ValueError(f"unknown forward case {name!r}; expected 'base' or 'sr'")


def build_unet_calls(cfg: UNetConfig) -> int:
    """Cross-attention calls per forward of the coupled U-Net of ``cfg`` (built on meta)."""
    with torch.device("meta"):
        calls = build_unet(cfg).num_cross_calls
    assert isinstance(calls, int)
    return calls


def _baddbmm_flops(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any,
                   out_shape: Any = None, **kwargs: Any) -> int:
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


def count_flops(name: str, preset: str, batch: int = 1) -> float:
    """FLOP of one forward of batch ``batch`` (one multiply-add = 2 FLOP), counted on the meta
    device with ``FlopCounterMode``. The temporal conv accumulates its outer taps with in-place
    ``baddbmm_``, counted like ``baddbmm``."""
    case = ForwardCase.build(name, preset, "meta", batch=batch)
    extra = {torch.ops.aten.baddbmm_: _baddbmm_flops}
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        case.run()
    return float(counter.get_total_flops())

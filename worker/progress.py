"""A job's progress as ``GET /jobs/{id}`` reports it (:class:`core.contract.Progress`).

**Steps.** ``step`` / ``total`` count the sampler steps of the current stage in the request's
own unit: ``base`` counts ``sampler.steps`` (DPM-Solver singlestep reports after each order-k
update, which advances k steps: 3, 6, ..., 20 of 20 for the official sampler, not 7 updates);
``sr`` counts ``super_resolution.steps`` once per chunk of frames the SR network runs
(``MMD_SR_MAX_BATCH_FRAMES``), so ``total`` = SR steps x chunks. Adaptive DPM-Solver's total is
its running estimate. The other stages (fetch, decode, mux, upload) report 0 / 0.

**Fraction.** One overall ``fraction`` of the job's expected compute: each sampling stage
weighs its network evaluations x the FLOPs of one evaluation:

- base: ``sampler.steps`` evaluations of the coupled U-Net (adaptive: the steps as an estimate);
  the gradient-guided conditional modes and prompted jobs add a backward pass per evaluation
  (one for both), counted as 2 forwards (the aligner's own cost is not counted);
- sr: ``super_resolution.steps`` x frames evaluations of the SR U-Net on one frame.

FLOPs are counted once per model config with ``torch.utils.flop_counter`` on the meta device
(no weights, no memory; ~1-3 s once per config). The official sizes: 1.24 TFLOP per base
evaluation, 1.26 TFLOP per SR frame evaluation, so a fast-preset joint job (15 + 16 x 12) is 93 %
SR. The short stages (fetch, decode, mux, upload) carry no weight: the fraction holds during
them. Models whose configs cannot be counted (fakes in unit tests) weigh evaluations alike.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.contract import JobSpec
from core.sampling import SamplerParams

log = logging.getLogger(__name__)

BACKWARD_COST = 2.0  # a backward pass, in forward passes (gradient guidance)


@dataclass(frozen=True)
class StageWeights:
    """Relative expected compute of the base and SR stages (they sum to 1)."""

    base: float
    sr: float

    def fraction(self, stage: str, step: int, total: int) -> float:
        """The job's overall fraction at ``step`` of ``total`` of ``stage``."""
        within = min(1.0, step / total) if total > 0 else 0.0
        if stage == "sr":
            return min(1.0, self.base + self.sr * within)
        return min(1.0, self.base * within)


@functools.lru_cache(maxsize=16)
def unet_flops(cfg: Any) -> float | None:
    """FLOPs of one coupled U-Net forward of batch 1 (``cfg``: ``model.config.UNetConfig``)."""
    import torch

    from model import build_unet

    with torch.device("meta"):
        net = build_unet(cfg)
        f, c, h, w = cfg.video_size
        video, audio = torch.empty(1, f, c, h, w), torch.empty(1, *cfg.audio_size)
    return _count(lambda: net(video, audio, torch.zeros(1, device="meta")))


@functools.lru_cache(maxsize=16)
def sr_flops(cfg: Any) -> float | None:
    """FLOPs of one SR U-Net forward on one frame (``cfg``: ``model.config.SRConfig``)."""
    import torch

    from model import build_sr

    with torch.device("meta"):
        net = build_sr(cfg)
        x = torch.empty(1, cfg.in_channels, cfg.large_size, cfg.large_size)
        low = torch.empty(1, cfg.in_channels, cfg.small_size, cfg.small_size)
    return _count(lambda: net(x, torch.zeros(1, device="meta"), low))


def _count(forward: Callable[[], Any]) -> float | None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            forward()
    except Exception:
        log.warning("could not count the FLOPs of a model; progress weighs evaluations alike",
                    exc_info=True)
        return None
    return float(counter.get_total_flops()) or None


def _per_eval(models: Any) -> tuple[float, float]:
    """FLOPs of one base evaluation and of one SR frame evaluation (1, 1 when unknown)."""
    from model.config import SRConfig, UNetConfig

    base_cfg, sr_cfg = getattr(models, "unet_cfg", None), getattr(models, "sr_cfg", None)
    base = unet_flops(base_cfg) if isinstance(base_cfg, UNetConfig) else None
    sr = sr_flops(sr_cfg) if isinstance(sr_cfg, SRConfig) else None
    if base is None or sr is None:
        return 1.0, 1.0
    return base, sr


def stage_weights(spec: JobSpec, models: Any, sr_on: bool, span: Any = None) -> StageWeights:
    """The base and SR stages' shares of ``spec``'s expected compute on ``models``; a
    whole-clip job (``span``: its ``worker.whole_clip.SpanInput``) runs the base network once
    per window and SR once per frame of the span."""
    base_eval, sr_eval = _per_eval(models)
    frames = int(models.unet_cfg.video_size[0])
    windows = 1
    if span is not None:
        from core.windows import default_overlap

        stride = frames - default_overlap(frames)
        windows = 1 if span.frames <= frames else 1 + -(-(span.frames - frames) // stride)
        frames = span.frames
    base_evals = float(spec.sampler.steps) * windows
    if spec.prompt is not None or (spec.mode != "joint" and spec.guidance == "gradient"):
        base_evals *= 1.0 + BACKWARD_COST  # one backward per evaluation, prompted or guided
    base = base_evals * base_eval
    if not sr_on:
        return StageWeights(base=1.0, sr=0.0)
    sr = float(spec.super_resolution.steps) * frames * sr_eval
    return StageWeights(base=base / (base + sr), sr=sr / (base + sr))


def step_counter(sampler: SamplerParams) -> Callable[[int, int], tuple[int, int]]:
    """Maps a base sampler's ``(step, total)`` callback to sampler steps of ``sampler.steps``
    (DPM-Solver singlestep calls back once per order-k update; the others once per step)."""
    if not (sampler.name.startswith("dpm_solver") and sampler.method == "singlestep"):
        return lambda step, total: (step, total)
    from model.samplers.dpm_methods import singlestep_orders

    orders = singlestep_orders(sampler.steps, sampler.order)
    done = [sum(orders[: i + 1]) for i in range(len(orders))]

    def steps(update: int, updates: int) -> tuple[int, int]:
        if updates != len(orders) or not 1 <= update <= updates:
            return update, updates  # not the expected schedule: report it as it is
        return done[update - 1], sampler.steps

    return steps

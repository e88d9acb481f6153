"""Train the demo models (base coupled U-Net and SR U-Net) from scratch on the demo world.

The official linear schedule (1000 steps), uniform timesteps, v-prediction (``v = alpha*eps -
sigma*x0``, MSE per modality, summed), AdamW with a linear warm-up then a constant rate, gradient
clipping at 1, EMA weights (decay ``min(ema, (1 + step) / (10 + step))``). Every random draw of a
step (clips, timesteps, noise, cross-attention window shifts) comes from two CPU generators whose
states are saved with the checkpoint, so a resumed run continues exactly as an uninterrupted one.

* base: clips from :func:`model.demo.world.sample_batch` at the preset's geometry, audio x
  ``audio_scale``;
* SR: (low-res, high-res) frame pairs: the same events rendered at ``small_size`` and
  ``large_size`` (:func:`sr_batch`).

Checkpoint (``torch.save``, loadable with ``weights_only=True``): ``model``, ``ema``,
``optimizer`` state dicts, ``step``, ``rng`` (generator states), ``what``, ``preset``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from model.config import SRConfig, UNetConfig
from model.demo.world import Geometry, draw_events, render, sample_batch
from model.denoiser import v_target
from model.schedule import TRAIN_STEPS, DiscreteSchedule
from model.sr import SRUNet
from model.unet import AVUNet

__all__ = ["TrainSettings", "Trainer", "base_geometry", "sr_batch", "train"]

log = logging.getLogger(__name__)
What = Literal["base", "sr"]


@dataclass(frozen=True)
class TrainSettings:
    """One training run. ``steps``: stop at this step (total, a resumed run counts on);
    ``minutes``: also stop after this much wall-clock time (None = no limit)."""

    what: What = "base"
    preset: str = "demo"
    steps: int = 10000
    minutes: float | None = None
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every_s: float = 180.0

    def __post_init__(self) -> None:
        if self.what not in ("base", "sr"):
            raise ValueError(f"what must be 'base' or 'sr'; got {self.what!r}")
        if self.steps < 0 or self.batch < 1 or not self.lr > 0 or not 0 <= self.ema < 1:
            raise ValueError(f"need steps >= 0, batch >= 1, lr > 0, 0 <= ema < 1; got {self}")


def base_geometry(cfg: UNetConfig) -> Geometry:
    """The demo world's geometry for a base config (frames, fps, frame size, sample rate)."""
    frames, _, h, w = cfg.video_size
    if h != w:
        raise ValueError(f"the demo world renders square frames; config has {h}x{w}")
    geo = Geometry(frames=frames, fps=cfg.fps, size=h, sample_rate=cfg.sample_rate)
    if geo.audio_length != cfg.audio_size[1]:
        raise ValueError(f"config audio length {cfg.audio_size[1]} != frames/fps*sample_rate = "
                         f"{geo.audio_length}; fix the preset's audio_size, fps or sample_rate")
    return geo


def sr_batch(n: int, cfg: SRConfig, g: torch.Generator, frames: int = 8) -> tuple[Tensor, Tensor]:
    """``n`` SR training pairs: ``low [n, 3, s, s]``, ``high [n, 3, S, S]`` in ``[-1, 1]``: one
    frame drawn uniformly from a clip of ``frames`` frames, its events rendered at both sizes."""
    lows, highs = [], []
    for _ in range(n):
        events = draw_events(frames, g)
        f = int(torch.randint(0, frames, (), generator=g))
        lo, _ = render(events, Geometry(frames, 8, cfg.small_size, 8))
        hi, _ = render(events, Geometry(frames, 8, cfg.large_size, 8))
        lows.append(lo[f])
        highs.append(hi[f])
    return torch.stack(lows), torch.stack(highs)


def _ema_decay(step: int, ema: float) -> float:
    return min(ema, (1 + step) / (10 + step))


class Trainer:
    """Model, EMA copy, optimizer and generators of one run; :meth:`step` trains one batch."""

    def __init__(self, settings: TrainSettings, unet_cfg: UNetConfig | None = None,
                 sr_cfg: SRConfig | None = None) -> None:
        self.s = settings
        torch.manual_seed(settings.seed)  # initial weights
        self.net: nn.Module
        if settings.what == "base":
            self.cfg: UNetConfig | SRConfig = unet_cfg or UNetConfig.preset(settings.preset)
            assert isinstance(self.cfg, UNetConfig)
            self.geo = base_geometry(self.cfg)
            self.net = AVUNet(self.cfg)
        else:
            self.cfg = sr_cfg or SRConfig.preset(settings.preset)
            assert isinstance(self.cfg, SRConfig)
            self.net = SRUNet(self.cfg)
        if self.cfg.prediction != "v":
            raise ValueError("the demo trainer trains v-prediction; the preset says "
                             f"prediction={self.cfg.prediction!r}")
        self.net.train()
        self.ema = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=0.0)
        self.data_gen = torch.Generator().manual_seed(settings.seed * 2 + 1)
        self.shift_gen = torch.Generator().manual_seed(settings.seed * 2 + 2)
        acp = DiscreteSchedule.linear(TRAIN_STEPS).alphas_cumprod
        self.alpha = torch.tensor(acp, dtype=torch.float64).sqrt().float()
        self.sigma = torch.tensor(1.0 - acp, dtype=torch.float64).sqrt().float()
        self.step_count = 0

    def _lr(self) -> float:
        return self.s.lr * min(1.0, (self.step_count + 1) / max(1, self.s.warmup))

    def _noised(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        eps = torch.randn(x0.shape, generator=self.data_gen)
        a, s = self.alpha[t], self.sigma[t]
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return a.view(shape) * x0 + s.view(shape) * eps, v_target(x0, eps, a, s)

    def losses(self) -> dict[str, Tensor]:
        """One batch's losses (``video``/``audio`` for base, ``sr`` for SR) with gradients."""
        b, g = self.s.batch, self.data_gen
        if isinstance(self.cfg, UNetConfig):
            video, audio = sample_batch(b, self.geo, g)
            audio = audio * self.cfg.audio_scale
            t = torch.randint(0, TRAIN_STEPS, (b,), generator=g)
            xv, tv = self._noised(video, t)
            xa, ta = self._noised(audio, t)
            pv, pa = self.net(xv, xa, t.float(), generator=self.shift_gen)
            return {"video": (pv - tv).square().mean(), "audio": (pa - ta).square().mean()}
        low, high = sr_batch(b, self.cfg, g)
        t = torch.randint(0, TRAIN_STEPS, (b,), generator=g)
        x, target = self._noised(high, t)
        out = self.net(x, t.float(), low)[:, : self.cfg.in_channels]
        return {"sr": (out - target).square().mean()}

    def step(self) -> dict[str, float]:
        """Train one batch; returns the losses as floats."""
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        losses = self.losses()
        total = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        nn.utils.clip_grad_norm_(self.net.parameters(), self.s.grad_clip)
        self.opt.step()
        d = _ema_decay(self.step_count, self.s.ema)
        with torch.no_grad():
            for k, v in self.net.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    self.ema[k].copy_(v)
        self.step_count += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def state(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(), "ema": self.ema, "optimizer": self.opt.state_dict(),
            "step": self.step_count, "what": self.s.what, "preset": self.s.preset,
            "rng": {"data": self.data_gen.get_state(), "shift": self.shift_gen.get_state()},
            "settings": {k: v for k, v in asdict(self.s).items() if v is not None},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, p)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resume from a checkpoint written by :meth:`save` (same ``what`` and preset)."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("what") != self.s.what or ck.get("preset") != self.s.preset:
            raise ValueError(f"checkpoint {path} is a {ck.get('what')} / {ck.get('preset')} run; "
                             f"this run trains {self.s.what} / {self.s.preset}: pass the matching "
                             "--checkpoint or start a new file")
        self.net.load_state_dict(ck["model"])
        self.ema = {k: v.clone() for k, v in ck["ema"].items()}
        self.opt.load_state_dict(ck["optimizer"])
        self.step_count = int(ck["step"])
        self.data_gen.set_state(ck["rng"]["data"])
        self.shift_gen.set_state(ck["rng"]["shift"])


def train(settings: TrainSettings, checkpoint: str | os.PathLike[str] | None, *,
          progress: bool = True, on_save: Callable[[Trainer], None] | None = None,
          trainer: Trainer | None = None,
          should_stop: Callable[[], bool] | None = None) -> Trainer:
    """Run (or resume, when ``checkpoint`` exists) until ``settings.steps``, ``minutes`` or
    ``should_stop()`` (checked between steps, so the saved state is a whole number of steps);
    saves to ``checkpoint`` every ``checkpoint_every_s`` seconds and at the end."""
    from tqdm import tqdm

    tr = trainer or Trainer(settings)
    if checkpoint is not None and Path(checkpoint).is_file():
        tr.load(checkpoint)
        log.info("resumed %s at step %d", checkpoint, tr.step_count)
    start = last_save = time.monotonic()
    deadline = math.inf if settings.minutes is None else start + 60 * settings.minutes
    bar = tqdm(total=settings.steps, initial=tr.step_count, disable=not progress,
               desc=f"train {settings.what}", mininterval=5.0, dynamic_ncols=False, ncols=100)
    avg: dict[str, float] = {}
    try:
        while tr.step_count < settings.steps and time.monotonic() < deadline:
            if should_stop is not None and should_stop():
                log.info("stop requested at step %d", tr.step_count)
                break
            losses = tr.step()
            avg = {k: 0.98 * avg.get(k, v) + 0.02 * v for k, v in losses.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in avg.items()}, refresh=False)
            if tr.step_count % 100 == 0:
                log.info("step %d %s", tr.step_count,
                         " ".join(f"{k}={v:.4f}" for k, v in avg.items()))
            due = time.monotonic() - last_save > settings.checkpoint_every_s
            if checkpoint is not None and due:
                tr.save(checkpoint)
                last_save = time.monotonic()
                if on_save is not None:
                    on_save(tr)
    finally:
        bar.close()
        if checkpoint is not None:
            tr.save(checkpoint)
    return tr

"""Train the demo prompt aligner (:mod:`model.demo.aligner`) on the demo world.

Data: clips of the world with per-frame labels (colour of the flash, or none). The aligner must
score what guidance shows it, the base model's *clean estimates* during sampling (blurred and
averaged at high noise), so half of every batch is drawn from a pool of estimates made once at
the start: ``pool`` clips noised at uniform timesteps and denoised in one step by the demo base
model (``x0 = alpha*x - sigma*v``, audio divided by ``audio_scale``), each labelled with its
clean clip's labels; the other half are fresh clean clips. Loss per modality: cross-entropy of
the class on the frames with a flash, plus binary cross-entropy of activity on every frame.
Adam, constant rate, fixed seeds; a few minutes of CPU at one thread.

Checkpoint: ``{"model": state dict, "step", "settings", "accuracy"}`` (fp32); the export is
the fp16 state dict (:func:`model.demo.weights_io.export_aligner`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as fn

from model.config import UNetConfig
from model.demo.aligner import DemoAligner, DemoAlignerNet
from model.demo.train import base_geometry
from model.demo.world import EVENT_FRAMES, Geometry, draw_events, render
from model.schedule import TRAIN_STEPS, DiscreteSchedule

__all__ = ["AlignerSettings", "accuracy", "labelled_batch", "noisy_estimates", "train_aligner"]


@dataclass(frozen=True)
class AlignerSettings:
    """``steps`` Adam steps of ``batch`` clips (half pool estimates, half clean); ``pool``:
    clean estimates made with the base model at the start; ``width``: conv channels."""

    steps: int = 2000
    batch: int = 32
    pool: int = 1024
    lr: float = 2e-3
    width: int = 24
    seed: int = 0


def labelled_batch(n: int, geo: Geometry, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` clips: ``video [n,F,3,S,S]``, waveform ``audio [n,1,T]``, ``labels [n,F]`` int64
    (colour index of the frame's flash, -1 = no flash)."""
    videos, audios, labels = [], [], []
    for _ in range(n):
        events = draw_events(geo.frames, g)
        v, a = render(events, geo)
        lab = torch.full((geo.frames,), -1, dtype=torch.int64)
        for ev in events:
            lab[ev.start:ev.start + EVENT_FRAMES] = ev.colour
        videos.append(v)
        audios.append(a)
        labels.append(lab)
    return torch.stack(videos), torch.stack(audios), torch.stack(labels)


@torch.no_grad()
def noisy_estimates(unet: nn.Module, cfg: UNetConfig, video: Tensor, audio: Tensor,
                    g: torch.Generator, chunk: int = 16) -> tuple[Tensor, Tensor]:
    """The base model's one-step clean estimates of the clips noised at uniform timesteps
    (``video [n,F,3,S,S]``, waveform ``audio [n,1,T]`` in and out; v- or eps-prediction)."""
    acp = torch.tensor(DiscreteSchedule.linear(TRAIN_STEPS).alphas_cumprod, dtype=torch.float64)
    out_v, out_a = [], []
    for i in range(0, video.shape[0], chunk):
        v0, a0 = video[i:i + chunk], audio[i:i + chunk] * cfg.audio_scale
        t = torch.randint(0, TRAIN_STEPS, (v0.shape[0],), generator=g)
        al, si = acp[t].sqrt().float(), (1 - acp[t]).sqrt().float()
        xv = al.view(-1, 1, 1, 1, 1) * v0 + si.view(-1, 1, 1, 1, 1) * torch.randn(
            v0.shape, generator=g)
        xa = al.view(-1, 1, 1) * a0 + si.view(-1, 1, 1) * torch.randn(a0.shape, generator=g)
        pv, pa = unet(xv, xa, t.float(), generator=g)
        pv, pa = pv[:, :, :3].float(), pa[:, :1].float()
        if cfg.prediction == "v":  # x0 = alpha*x - sigma*v
            ev = al.view(-1, 1, 1, 1, 1) * xv - si.view(-1, 1, 1, 1, 1) * pv
            ea = al.view(-1, 1, 1) * xa - si.view(-1, 1, 1) * pa
        else:
            ev = (xv - si.view(-1, 1, 1, 1, 1) * pv) / al.view(-1, 1, 1, 1, 1)
            ea = (xa - si.view(-1, 1, 1) * pa) / al.view(-1, 1, 1)
        out_v.append(ev.clamp(-1, 1))
        out_a.append((ea / cfg.audio_scale).clamp(-1, 1))
    return torch.cat(out_v), torch.cat(out_a)


def _loss(net: DemoAlignerNet, video: Tensor, audio: Tensor, labels: Tensor) -> Tensor:
    lv, la = net(video, audio)
    on = labels >= 0
    total = torch.zeros(())
    for logits in (lv, la):
        total = total + fn.binary_cross_entropy_with_logits(logits[..., 3], on.float())
        if on.any():
            total = total + fn.cross_entropy(logits[..., :3][on], labels[on])
    return total


@torch.no_grad()
def accuracy(aligner: DemoAligner, video: Tensor, audio: Tensor, labels: Tensor
             ) -> dict[str, float]:
    """Per-frame accuracy on labelled clips: ``colour`` / ``pitch`` (argmax on frames with a
    flash), ``lit`` / ``sounding`` (activity probability > 0.5 vs the label)."""
    cv, lit, pa, snd = aligner.log_probs(video, audio)
    on = labels >= 0
    return {
        "colour": float((cv.argmax(-1)[on] == labels[on]).float().mean()),
        "pitch": float((pa.argmax(-1)[on] == labels[on]).float().mean()),
        "lit": float(((lit > 0.5) == on).float().mean()),
        "sounding": float(((snd > 0.5) == on).float().mean()),
    }


def train_aligner(settings: AlignerSettings, unet: nn.Module, cfg: UNetConfig,
                  out: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Any]:
    """Train from scratch with the base network ``unet`` (eval mode) making the pool; save the
    checkpoint to ``out``; returns it (with held-out accuracies on clean clips and on
    estimates)."""
    from tqdm import tqdm

    geo = base_geometry(cfg)
    torch.manual_seed(settings.seed)
    net = DemoAlignerNet(geo.samples_per_frame, settings.width)
    g = torch.Generator().manual_seed(settings.seed * 2 + 1)
    est_g = torch.Generator().manual_seed(settings.seed * 2 + 2)
    pool_v, pool_a, pool_l = labelled_batch(settings.pool, geo, g)
    pool_v, pool_a = noisy_estimates(unet, cfg, pool_v, pool_a, est_g)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    half = settings.batch // 2
    bar = tqdm(range(settings.steps), disable=not progress, desc="train aligner", ncols=100,
               mininterval=5.0)
    avg = 0.0
    for step in bar:
        idx = torch.randint(0, settings.pool, (half,), generator=g)
        cv, ca, cl = labelled_batch(settings.batch - half, geo, g)
        video = torch.cat([pool_v[idx], cv])
        audio = torch.cat([pool_a[idx], ca])
        labels = torch.cat([pool_l[idx], cl])
        loss = _loss(net, video, audio, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        value = float(loss.detach())
        avg = 0.98 * avg + 0.02 * value if step else value
        bar.set_postfix(loss=f"{avg:.4f}", refresh=False)
    bar.close()
    held = torch.Generator().manual_seed(settings.seed * 2 + 3)
    tv, ta, tl = labelled_batch(128, geo, held)
    ev, ea = noisy_estimates(unet, cfg, tv, ta, held)
    aligner = DemoAligner(net)
    acc = {"clean": accuracy(aligner, tv, ta, tl), "estimates": accuracy(aligner, ev, ea, tl)}
    ck = {"model": {k: v.detach().clone() for k, v in net.state_dict().items()},
          "step": settings.steps, "settings": asdict(settings), "accuracy": acc}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, out)
    return ck

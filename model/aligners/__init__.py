"""Prompt aligners: differentiable scorers of how well a clip matches a text prompt.

An aligner steers sampling toward a prompt without training the diffusion model (the
"Seeing and Hearing" approach, CVPR 2024): at every network evaluation the denoiser wrapper
adds ``scale * sigma * d(score)/dx`` through the clean estimate (``model/prompted.py``).

Kinds (:data:`ALIGNER_KINDS`): ``"demo"`` (a small colour/pitch classifier trained by
``mmd train-demo`` and shipped with the demo weights, ``model/demo/aligner.py``) and
``"imagebind"`` (ImageBind from its PyPI package, weights from an operator-given path,
``model/aligners/imagebind.py``).
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from model.aligners.base import Aligner
from model.config import UNetConfig

AlignerKind = Literal["demo", "imagebind"]
ALIGNER_KINDS: tuple[str, ...] = ("demo", "imagebind")

__all__ = ["ALIGNER_KINDS", "Aligner", "AlignerKind", "load_aligner"]


def load_aligner(kind: str, cfg: UNetConfig, *, weights: str | os.PathLike[str] | None = None,
                 device: str | torch.device = "cpu") -> Aligner:
    """Build the aligner ``kind`` for a base model of config ``cfg`` (its frame rate, sample
    rate and sizes), in eval mode on ``device``. ``weights``: the aligner's weights file
    (``demo``: none = the shipped ones; ``imagebind``: required, never downloaded).
    Raises ValueError for an unknown kind, FileNotFoundError for missing weights."""
    if kind == "demo":
        from model.demo.aligner import load_demo_aligner

        return load_demo_aligner(cfg, weights=weights, device=device)
    if kind == "imagebind":
        from model.aligners.imagebind import load_imagebind_aligner

        return load_imagebind_aligner(cfg, weights=weights, device=device)
    raise ValueError(f"unknown aligner {kind!r}; expected one of {ALIGNER_KINDS}")

"""Build the networks of one model family once: config preset -> weights -> precision -> device.

>>> models = load_models("landscape", preset="landscape", checkpoint="weights/landscape.pt",
...                      sr_checkpoint="weights/landscape_sr.pt", device="cuda", precision="fp16")

The ``demo`` preset's trained weights ship inside the package (``model/demo/weights``);
:func:`shipped_weights` finds and sha256-verifies them (the worker and ``mmd generate`` use them
when no checkpoint is given). Otherwise, without a checkpoint the preset is randomly
initialised (deterministically: the same random weights in every process, so a seed reproduces
its output across workers) and a WARNING says that the output is noise;
``LoadedModels.random_weights`` is then True.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import build_sr, build_unet
from model.checkpoint import load
from model.config import SRConfig, UNetConfig
from model.pipeline import LoadedModels
from model.precision import apply_precision
from model.speed import SpeedOptions, apply_speed

log = logging.getLogger(__name__)

# Seeds of the deterministic random initialisation used when no checkpoint is given.
RANDOM_INIT_SEED_UNET = 0
RANDOM_INIT_SEED_SR = 1
PRECISIONS = ("fp32", "fp16", "bf16")
SHIPPED_PRESETS = frozenset({"demo"})  # presets with trained weights in the package

Source = str | os.PathLike[str] | Mapping[str, Any]


def default_sr_preset(preset: str) -> str:
    """The SR preset that goes with a base preset: ``tiny`` -> ``tiny``, ``demo`` ->
    ``demo_sr``, else ``official``."""
    key = preset.lower()
    return {"tiny": "tiny", "demo": "demo_sr"}.get(key, "official")


def shipped_weights(
    preset: str, weights_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path] | None:
    """``{"base": path, "sr": path}`` of the trained weights shipped for ``preset`` (sha256
    checked against their manifest; ``weights_dir`` replaces the package's folder), or None
    when ``preset`` ships none. Raises FileNotFoundError / ValueError naming a missing or
    corrupt file."""
    if preset.lower() not in SHIPPED_PRESETS:
        return None
    from model.demo.weights_io import WEIGHTS_DIR, verify

    return verify(WEIGHTS_DIR if weights_dir is None else weights_dir)


def _prepare(
    build: Callable[[], nn.Module], source: Source | None, seed: int, what: str,
    device: torch.device, precision: str, speed: SpeedOptions,
) -> nn.Module:
    # Build under a fixed seed without touching the global RNG: random weights are then the
    # same in every process (and building a module that gets a checkpoint costs no RNG state).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
    if source is None:
        log.warning(
            "%s: no checkpoint given, using RANDOM weights: the output will be noise "
            "(pass a checkpoint for real samples)", what,
        )
    else:
        load(module, source)
    module = apply_precision(module, precision)
    module.eval().requires_grad_(False)
    return apply_speed(module.to(device), speed, device=device)


def load_models(
    name: str,
    *,
    preset: str,
    checkpoint: Source | None = None,
    sr_preset: str | None = None,
    sr_checkpoint: Source | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    sr: bool = True,
    speed: SpeedOptions | None = None,
    sr_batch_frames: int | None = None,
) -> LoadedModels:
    """Build, load, cast and move the base U-Net (and the SR U-Net unless ``sr=False``).

    :param name: label of this model set (shown in logs/metrics, e.g. ``"landscape"``).
    :param preset: :meth:`UNetConfig.preset` name (``landscape``, ``aist++``, ``tiny``).
    :param checkpoint: base weights (path or state dict); None = random weights.
    :param sr_preset: :meth:`SRConfig.preset` name; default :func:`default_sr_preset`.
    :param sr_checkpoint: SR weights; None = random weights.
    :param precision: ``fp32``, ``fp16`` or ``bf16`` (``model.precision.apply_precision``).
    :param speed: :class:`model.speed.SpeedOptions` (channels-last, SDPA kernels, compile, CUDA
        graphs); None = ``SpeedOptions()`` (channels-last, torch's SDPA choice, eager).
    :param sr_batch_frames: SR frames per network call (``LoadedModels.sr_batch_frames``);
        None = each request's ``sr_chunk_frames``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    dev = torch.device(device)
    speed = speed if speed is not None else SpeedOptions()
    if sr_batch_frames is not None and sr_batch_frames < 1:
        raise ValueError(f"sr_batch_frames must be >= 1 (or None); got {sr_batch_frames}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use "
                         "device='cpu'")
    unet_cfg = UNetConfig.preset(preset)
    unet = _prepare(lambda: build_unet(unet_cfg), checkpoint, RANDOM_INIT_SEED_UNET,
                    f"{name} base U-Net",
                    dev, precision, speed)
    sr_cfg: SRConfig | None = None
    sr_net: nn.Module | None = None
    if sr:
        sr_cfg = SRConfig.preset(sr_preset or default_sr_preset(preset))
        sr_net = _prepare(lambda: build_sr(sr_cfg), sr_checkpoint, RANDOM_INIT_SEED_SR,
                          f"{name} SR U-Net",
                          dev, precision, speed)
    elif sr_checkpoint is not None:
        raise ValueError("sr_checkpoint given with sr=False; drop one of them")
    random_weights = checkpoint is None or (sr and sr_checkpoint is None)
    return LoadedModels(
        name=name, unet=unet, unet_cfg=unet_cfg, sr=sr_net, sr_cfg=sr_cfg, device=dev,
        precision=precision, random_weights=random_weights, sr_batch_frames=sr_batch_frames,
    )

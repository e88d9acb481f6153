"""MM-Diffusion networks: the coupled audio-video U-Net and the super-resolution U-Net.

>>> from model import build_unet, build_sr
>>> from model.config import UNetConfig, SRConfig
>>> unet = build_unet(UNetConfig.preset("landscape"))
"""

from __future__ import annotations

from torch import nn

from model.config import SRConfig, UNetConfig

__all__ = ["SRConfig", "UNetConfig", "build_sr", "build_unet"]


def build_unet(cfg: UNetConfig) -> nn.Module:
    """Coupled U-Net in eval mode, float32, randomly initialised (load weights with
    :func:`model.checkpoint.load`). ``forward(video, audio, timesteps, *, window_shifts=None,
    generator=None) -> (video, audio)``.

    The per-frame Conv2d weights use the channels-last memory format; loading a checkpoint keeps
    it. ``model.speed.apply_speed`` (the worker) switches the base back to NCHW by default
    (``MMD_CHANNELS_LAST_BASE=false``: measured slower on CPU in wave 2).
    """
    import torch

    from model.unet import AVUNet

    model = AVUNet(cfg)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model.eval()


def build_sr(cfg: SRConfig) -> nn.Module:
    """SR U-Net in eval mode, float32, randomly initialised. ``forward(x, timesteps, low_res)``.

    Conv weights and activations use the channels-last memory format (about 1.4x faster on
    CPU with oneDNN; loading a checkpoint keeps it). Outputs are ordinary contiguous tensors.
    """
    import torch

    from model.sr import SRUNet

    return SRUNet(cfg).to(memory_format=torch.channels_last).eval()

"""MM-Diffusion networks: the coupled audio-video U-Net and the super-resolution U-Net.

>>> from model import build_unet, build_sr
>>> from model.config import UNetConfig, SRConfig
>>> unet = build_unet(UNetConfig.preset("landscape"))
"""

from __future__ import annotations

from torch import nn

from model.config import SRConfig, UNetConfig

__all__ = ["build_unet", "build_sr", "UNetConfig", "SRConfig"]


def build_unet(cfg: UNetConfig) -> nn.Module:
    """Coupled U-Net in eval mode, float32, randomly initialised (load weights with
    :func:`model.checkpoint.load`). ``forward(video, audio, timesteps, *, window_shifts=None,
    generator=None) -> (video, audio)``."""
    from model.unet import AVUNet

    return AVUNet(cfg).eval()


def build_sr(cfg: SRConfig) -> nn.Module:
    """SR U-Net in eval mode, float32, randomly initialised. ``forward(x, timesteps, low_res)``."""
    from model.sr import SRUNet

    return SRUNet(cfg).eval()

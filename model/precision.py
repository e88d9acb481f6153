"""Inference precision switch mirroring the official ``convert_to_fp16`` (ARCHITECTURE.md 5.3, 6).

``apply_precision(module, "fp16" | "bf16" | "fp32")`` casts the weights and biases of the
Conv1d/Conv2d/Conv3d layers inside the U-Net body to the working dtype and sets the module's
``working_dtype`` (inputs are cast to it at the start of ``forward``). Everything else stays
float32: the timestep MLP, every ``emb_layers`` Linear, all GroupNorms (which also compute in
float32) and, in the SR model, the final ``out`` head (the SR model casts its activations back to
the input dtype before it). Self-attention softmax runs in float32; the cross-attention softmax
runs in the working dtype. The base model returns the working dtype; the SR model returns the
input dtype.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["PRECISIONS", "Precision", "apply_precision", "dtype_of"]

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
}
_ALIASES = {"float32": "fp32", "half": "fp16", "float16": "fp16", "bfloat16": "bf16"}
# Sub-trees whose convolutions run in the working dtype (official convert_to_fp16).
_BODY = ("input_blocks", "middle_blocks", "middle_block", "output_blocks", "video_out",
         "audio_out")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def dtype_of(precision: str) -> torch.dtype:
    """``"fp16"``/``"half"`` -> ``torch.float16`` etc.; ValueError names the accepted values."""
    key = _ALIASES.get(precision, precision)
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    return PRECISIONS[key]


def apply_precision(module: nn.Module, precision: str) -> nn.Module:
    """Switch a model built by ``build_unet``/``build_sr`` to ``precision``; returns it.

    The model is converted in place (as ``nn.Module.half()`` does); calling it again with
    ``"fp32"`` restores float32 weights (values rounded by the round trip stay rounded).
    """
    dtype = dtype_of(precision)
    if not hasattr(module, "working_dtype"):
        raise ValueError(f"{type(module).__name__} is not a model from model.build_unet/build_sr")
    for name in _BODY:
        sub = getattr(module, name, None)
        if sub is None:
            continue
        for layer in sub.modules():
            if isinstance(layer, _CONVS):
                layer.to(dtype)
    module.working_dtype = dtype
    return module

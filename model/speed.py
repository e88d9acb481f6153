"""Speed paths of the networks, each a switch whose default is the fast path on CPU.

>>> opts = SpeedOptions(channels_last=True, sdpa_backend="auto", compile=False)
>>> unet = apply_speed(unet, opts, device=torch.device("cpu"))

* ``channels_last``: Conv2d weights (and hence the per-frame activations, see ``model.nn``) in
  the channels-last memory format, oneDNN's / cuDNN's fast path; ``False`` = plain NCHW. The
  base U-Net only with ``channels_last_base`` too (slower on CPU; try it on GPU).
* ``sdpa_backend``: which ``scaled_dot_product_attention`` kernels run (``model.attention``);
  ``"math"`` is what the official code computes.
* ``compile``: ``torch.compile`` of the forward (in place, the module keeps its type and
  attributes); the first call per input shape compiles, so the worker's warm-up pays it. For
  the base U-Net only the network proper (``AVUNet._network``) is compiled: its random window
  shifts are drawn eagerly before it and go in as an int64 tensor, so one graph serves every
  shift value (as Python ints each new value recompiled until dynamo's cache limit).
* ``cuda_graphs``: ``torch.compile(mode="reduce-overhead")`` (CUDA graphs over static shapes);
  CUDA only, ValueError elsewhere.

Sampler settings (the fast and official presets) are ``core.sampling``'s. Precision (fp16 /
bf16) is ``model.precision.apply_precision``; SR batching is
``GenerationRequest.sr_chunk_frames`` / ``LoadedModels.sr_batch_frames`` in ``model.pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.attention import SDPA_BACKENDS, set_sdpa_backend

__all__ = ["PLAIN", "SpeedOptions", "apply_speed", "set_channels_last", "uses_channels_last"]


@dataclass(frozen=True)
class SpeedOptions:
    """Switches of :func:`apply_speed` (``MMD_CHANNELS_LAST``, ``MMD_SDPA_BACKEND``,
    ``MMD_COMPILE``, ``MMD_CUDA_GRAPHS``)."""

    channels_last: bool = True
    # The base U-Net too? Measured on CPU (landscape, 2 threads, fused attention): NCHW 12.2 s,
    # channels-last 14.4 s per forward (the per-frame layout copies cost more than oneDNN gains
    # at 64x64), while the SR net gains ~1.5x. So only the SR net by default.
    channels_last_base: bool = False
    sdpa_backend: str = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    # torch.compile backend: "inductor" (generated kernels, the fast one); "eager" / "aot_eager"
    # only trace (cheap; tests use them to check the compile wiring without inductor's minutes).
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend {self.sdpa_backend!r} is unknown; expected one of "
                             f"{sorted(SDPA_BACKENDS)}")


# What the official code computes (with fp32 precision): NCHW, math attention, eager.
PLAIN = SpeedOptions(channels_last=False, sdpa_backend="math", compile=False, cuda_graphs=False)
# Every path on (the GPU candidate); compile stays opt-in.
ALL_ON = SpeedOptions(channels_last=True, channels_last_base=True)


def set_channels_last(module: nn.Module, enabled: bool) -> nn.Module:
    """Put every Conv2d weight of ``module`` in channels-last (``enabled``) or contiguous NCHW
    format, in place; returns it. Values are unchanged, only the memory layout."""
    fmt = torch.channels_last if enabled else torch.contiguous_format
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.to(memory_format=fmt)
    return module


def uses_channels_last(module: nn.Module) -> bool:
    """True when the first Conv2d weight of ``module`` is channels-last (False if none)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer.weight.is_contiguous(memory_format=torch.channels_last)
    return False


def apply_speed(module: nn.Module, options: SpeedOptions, *, device: torch.device) -> nn.Module:
    """Apply ``options`` to a model from ``build_unet`` / ``build_sr`` (after loading weights and
    ``apply_precision``, on its final ``device``); returns the same module, changed in place.

    The SDPA backend is process-wide (torch's kernel flags are): the last call wins.
    """
    if options.cuda_graphs and device.type != "cuda":
        raise ValueError(f"MMD_CUDA_GRAPHS=true needs a CUDA device; MMD_DEVICE is {str(device)!r} "
                         "(set MMD_CUDA_GRAPHS=false or run on cuda)")
    is_base = hasattr(module, "num_cross_calls")  # the coupled audio-video U-Net
    set_channels_last(module, options.channels_last and (options.channels_last_base or not is_base))
    set_sdpa_backend(options.sdpa_backend)
    if options.cuda_graphs:
        _compile_with_cuda_graphs(module, is_base)
    elif options.compile and is_base:  # shifts drawn eagerly, passed to the graph as a tensor
        module.shifts_as_table = True
        module._network = torch.compile(  # type: ignore[method-assign]
            module._network, backend=options.compile_backend, dynamic=False)
    elif options.compile:
        module.compile(backend=options.compile_backend, dynamic=False)
    return module


def _compile_with_cuda_graphs(module: nn.Module, is_base: bool) -> None:
    """``forward`` (the base U-Net: ``_network``, shifts as a tensor, as for ``compile``)
    compiled with ``mode="reduce-overhead"``; outputs are cloned because a CUDA graph replay
    overwrites its output buffers and the multistep samplers keep earlier outputs.
    Not measured yet (no GPU in CI): treat as experimental."""
    from torch.utils._pytree import tree_map

    name = "_network" if is_base else "forward"
    compiled = torch.compile(getattr(module, name), mode="reduce-overhead", dynamic=False)

    def run(*args: object, **kwargs: object) -> object:
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled(*args, **kwargs)
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)

    if is_base:
        module.shifts_as_table = True
    setattr(module, name, run)

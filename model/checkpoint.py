"""Strict checkpoint loading with readable errors.

``load(module, source)`` accepts a path to a ``.pt`` file or a state dict (fp32 or fp16 tensors;
plain, ``module.``-prefixed from DDP, or wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``
/ ``{"ema": ...}``) and loads it with ``strict=True``. On mismatch it raises
:class:`CheckpointError` listing missing keys, unexpected keys and shape mismatches (first few of
each) with a guess at the cause (base vs SR checkpoint, wrong preset).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CheckpointError", "LoadInfo", "load", "load_state_dict_file", "normalise_state_dict"]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "ema", "model_state_dict")
_SHOW = 5


class CheckpointError(ValueError):
    """The checkpoint does not fit the model; the message says what differs and why."""


@dataclass(frozen=True)
class LoadInfo:
    """What :func:`load` did: entries loaded, prefix stripped, wrapper key, source dtypes."""

    num_tensors: int
    stripped_prefix: str | None
    wrapper_key: str | None
    source_dtypes: tuple[str, ...]
    source: str


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file on CPU (tensors only, ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (expected a .pt state dict)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"could not read checkpoint {p}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {p} holds a {type(obj).__name__}, expected a dict of "
                              "tensors (a state_dict)")
    return dict(obj)


def normalise_state_dict(sd: Mapping[str, Any]) -> tuple[dict[str, Tensor], str | None, str | None]:
    """Unwrap ``{"state_dict": ...}``-style dicts and strip a ``module.`` prefix.

    Returns ``(state_dict, stripped_prefix, wrapper_key)``; never mutates ``sd``.
    """
    wrapper = None
    if not any(isinstance(v, Tensor) for v in sd.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(sd.get(key), Mapping):
                wrapper, sd = key, sd[key]
                break
    out = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    non_tensor = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if non_tensor:
        raise CheckpointError(f"checkpoint has {len(non_tensor)} non-tensor entries (e.g. "
                              f"{non_tensor[:_SHOW]}); expected a flat state_dict key -> tensor")
    prefix = None
    if out and all(k.startswith("module.") for k in out):
        prefix = "module."
        out = {k[len(prefix):]: v for k, v in out.items()}
    return out, prefix, wrapper


def _guess(model_keys: set[str], ckpt_keys: set[str], shape_bad: list[str]) -> str:
    def kind(keys: set[str]) -> str | None:
        if any(k.startswith("middle_blocks.") for k in keys):
            return "base (coupled audio-video U-Net)"
        if any(k.startswith("middle_block.") for k in keys):
            return "SR (super-resolution U-Net)"
        return None

    mk, ck = kind(model_keys), kind(ckpt_keys)
    if mk and ck and mk != ck:
        flag = "--sr-checkpoint" if ck.startswith("SR") else "--checkpoint"
        return (f"this looks like a {ck} checkpoint but the model is the {mk}; pass it as "
                f"{flag} / load it into the other model")
    if ck is None and ckpt_keys:
        return "the checkpoint keys do not look like an MM-Diffusion model at all"
    if shape_bad or model_keys != ckpt_keys:
        return ("same kind of model but a different architecture: check the preset / flags "
                "(model_channels, channel_mult, num_res_blocks, attention resolutions, "
                "learn_sigma) against the ones the checkpoint was trained with")
    return ""


def _first(items: list[str]) -> str:
    more = f" ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def load(module: nn.Module, source: str | os.PathLike[str] | Mapping[str, Any]) -> LoadInfo:
    """Load ``source`` (path or state dict) into ``module`` strictly; returns :class:`LoadInfo`.

    Tensors are copied into the module's existing parameters, so fp16 checkpoints load into an
    fp32 model (and vice versa). The module is modified in place (it is the load target); the
    given dict is not.
    """
    name = str(source) if not isinstance(source, Mapping) else "<state dict>"
    raw = load_state_dict_file(source) if not isinstance(source, Mapping) else source
    sd, prefix, wrapper = normalise_state_dict(raw)
    if prefix:
        log.warning("checkpoint %s: stripped DDP prefix %r from %d keys", name, prefix, len(sd))
    target = module.state_dict()
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    shape_bad = [
        f"{k}: checkpoint {list(sd[k].shape)} vs model {list(target[k].shape)}"
        for k in target if k in sd and sd[k].shape != target[k].shape
    ]
    if missing or unexpected or shape_bad:
        parts = [f"checkpoint {name} does not fit {type(module).__name__} "
                 f"({len(target)} model entries, {len(sd)} checkpoint entries):"]
        if missing:
            parts.append(f"  {len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"  {len(unexpected)} unexpected keys: {_first(unexpected)}")
        if shape_bad:
            parts.append(f"  {len(shape_bad)} shape mismatches: {_first(shape_bad)}")
        hint = _guess(set(target), set(sd), shape_bad)
        if hint:
            parts.append(f"  likely cause: {hint}")
        raise CheckpointError("\n".join(parts))
    module.load_state_dict(sd, strict=True)
    dtypes = tuple(sorted({str(v.dtype).replace("torch.", "") for v in sd.values()}))
    log.info("loaded %d tensors from %s (dtypes %s)", len(sd), name, ",".join(dtypes))
    return LoadInfo(len(sd), prefix, wrapper, dtypes, name)

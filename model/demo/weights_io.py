"""The shipped demo weights: export from training checkpoints, verify, load.

``model/demo/weights/`` holds ``demo_base.pt`` and ``demo_sr.pt`` (fp16 EMA state dicts, the
official checkpoint format read by :func:`model.checkpoint.load`), ``demo_aligner.pt`` (the
prompt aligner, :mod:`model.demo.aligner`) and ``MANIFEST.json``: per file its sha256, bytes,
preset and training step; the command and the git commit that produced them (the aligner's
entry has its own).

>>> models = load_demo_models()          # sha256 checked; LoadedModels with random_weights False
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MANIFEST",
    "WEIGHTS_DIR",
    "ema_state_dict",
    "export",
    "export_aligner",
    "load_demo_models",
    "sha256_file",
    "verify",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "MANIFEST.json"
FILES = {"base": "demo_base.pt", "sr": "demo_sr.pt", "aligner": "demo_aligner.pt"}
PRESETS = {"base": "demo", "sr": "demo_sr"}


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ema_state_dict(checkpoint: str | os.PathLike[str],
                   dtype: torch.dtype = torch.float16) -> tuple[dict[str, torch.Tensor], int]:
    """The EMA weights of a training checkpoint (``model/demo/train.py``) cast to ``dtype``,
    and its step."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "ema" not in ck:
        raise ValueError(f"{checkpoint} is not a demo training checkpoint (no 'ema' entry)")
    sd = {k: (v.to(dtype) if v.dtype.is_floating_point else v) for k, v in ck["ema"].items()}
    return sd, int(ck["step"])


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export(out_dir: str | os.PathLike[str], *, base: str | os.PathLike[str],
           sr: str | os.PathLike[str], command: str,
           extra: dict[str, Any] | None = None) -> Path:
    """Write the fp16 EMA weights of the ``base`` and ``sr`` training checkpoints and
    ``MANIFEST.json`` into ``out_dir``; returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for what, src in (("base", base), ("sr", sr)):  # the aligner: export_aligner
        sd, step = ema_state_dict(src)
        path = out / FILES[what]
        torch.save(sd, path)
        files[what] = {"file": FILES[what], "sha256": sha256_file(path),
                       "bytes": path.stat().st_size, "preset": PRESETS[what], "step": step,
                       "dtype": "float16", "weights": "EMA"}
    old = out / MANIFEST
    if old.is_file():  # keep the other entries (the aligner) of an existing manifest
        previous = json.loads(old.read_text())
        files.update({k: v for k, v in previous.get("files", {}).items() if k not in files})
    manifest = {"model": "demo", "files": files, "command": command, "commit": _git_commit(),
                **(extra or {})}
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def export_aligner(out_dir: str | os.PathLike[str], *, checkpoint: str | os.PathLike[str],
                   command: str) -> Path:
    """Write the fp16 state dict of an aligner training checkpoint
    (:mod:`model.demo.train_aligner`) as ``demo_aligner.pt`` into ``out_dir`` and add its entry
    (sha256, bytes, step, accuracies, the command, the commit) to the existing
    ``MANIFEST.json``, leaving the base and SR entries as they are; returns the manifest path."""
    out = Path(out_dir)
    mpath = out / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} is missing: export the base and SR weights first")
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "model" not in ck or "accuracy" not in ck:
        raise ValueError(f"{checkpoint} is not an aligner checkpoint (`mmd train-demo --what "
                         "aligner`)")
    sd = {k: v.to(torch.float16) for k, v in ck["model"].items()}
    path = out / FILES["aligner"]
    torch.save(sd, path)
    manifest = json.loads(mpath.read_text())
    manifest["files"]["aligner"] = {
        "file": FILES["aligner"], "sha256": sha256_file(path), "bytes": path.stat().st_size,
        "preset": "demo", "step": int(ck["step"]), "dtype": "float16", "weights": "final",
        "params": sum(v.numel() for v in sd.values()), "settings": ck.get("settings", {}),
        "accuracy": ck["accuracy"], "command": command, "commit": _git_commit(),
    }
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    return mpath


def verify(weights_dir: str | os.PathLike[str] = WEIGHTS_DIR) -> dict[str, Path]:
    """Check every file of the manifest against its sha256; returns ``{"base": path, "sr":
    path}``. Raises ValueError naming the file that differs."""
    d = Path(weights_dir)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} is missing: the demo weights are not installed (train "
                                "and export them with `mmd train-demo --export DIR`)")
    manifest = json.loads(mpath.read_text())
    paths = {}
    for what, entry in manifest["files"].items():
        p = d / entry["file"]
        if not p.is_file():
            raise FileNotFoundError(f"demo weights file {p} listed in {mpath} is missing")
        digest = sha256_file(p)
        if digest != entry["sha256"]:
            raise ValueError(f"demo weights {p} have sha256 {digest}, the manifest says "
                             f"{entry['sha256']}: the file is corrupt or was replaced; reinstall "
                             "the package or re-export the weights")
        paths[what] = p
    return paths


def load_demo_models(*, device: str | torch.device = "cpu", precision: str = "fp32",
                     sr: bool = True, weights_dir: str | os.PathLike[str] = WEIGHTS_DIR,
                     aligner: bool = True, **kwargs: Any) -> Any:
    """:class:`model.pipeline.LoadedModels` of the shipped demo weights (sha256 verified), with
    the prompt aligner when the manifest lists one and ``aligner``.
    Extra keyword arguments go to :func:`model.registry.load_models` (``speed``, ...)."""
    from model.registry import load_models

    paths = verify(weights_dir)
    models = load_models("demo", preset="demo", checkpoint=paths["base"], sr_preset="demo_sr",
                         sr_checkpoint=paths["sr"] if sr else None, device=device,
                         precision=precision, sr=sr, **kwargs)
    if aligner and "aligner" in paths:
        from model.demo.aligner import load_demo_aligner

        models.aligner = load_demo_aligner(models.unet_cfg, weights=paths["aligner"],
                                           device=device)
    return models

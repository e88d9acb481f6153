"""Golden parity: tiny U-Net (unshifted and with recorded shifts) and tiny SR vs the reference.

Half precision figures (measured on CPU, torch 2.13; relative to max |golden|):
U-Net fp16 video 7.0e-3 / audio 6.2e-3, bf16 5.6e-2 / 6.1e-2; SR fp16 1.8e-3, bf16 1.9e-2.
The bounds below are those figures rounded up about 2-3x (they move a little with the thread
count and the SDPA kernel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model import build_sr, build_unet
from model.checkpoint import load
from model.config import SRConfig, UNetConfig
from model.precision import apply_precision

TOL = 1e-5  # max |ours - golden| / max |golden|, float32


def rel_err(ours: torch.Tensor, golden: torch.Tensor) -> float:
    return ((ours.float() - golden).abs().max() / golden.abs().max()).item()


@pytest.fixture(scope="module")
def unet_golden(golden_dir: Path) -> dict[str, Any]:
    return torch.load(golden_dir / "unet_tiny.pt", weights_only=False)


@pytest.fixture(scope="module")
def sr_golden(golden_dir: Path) -> dict[str, Any]:
    return torch.load(golden_dir / "sr_tiny.pt", weights_only=False)


def run_unet(g: dict[str, Any], shift: bool, precision: str = "fp32", **kw: Any):
    cfg = UNetConfig.from_official_flags(**{**g["script_flags"], "cross_attention_shift": shift})
    model = build_unet(cfg)
    load(model, g["state_dict"])
    apply_precision(model, precision)
    x = g["inputs"]
    with torch.no_grad():
        return model, model(x["video"], x["audio"], x["timesteps"], **kw)


def test_flags_give_the_tiny_preset(unet_golden: dict[str, Any]) -> None:
    cfg = UNetConfig.from_official_flags(**unet_golden["script_flags"])
    assert cfg.with_(cross_attention_shift=True) == UNetConfig.preset("tiny")


def test_unet_unshifted(unet_golden: dict[str, Any]) -> None:
    _, (video, audio) = run_unet(unet_golden, shift=False)
    assert rel_err(video, unet_golden["outputs"]["video"]) <= TOL
    assert rel_err(audio, unet_golden["outputs"]["audio"]) <= TOL


def test_unet_with_recorded_shifts(unet_golden: dict[str, Any]) -> None:
    case = unet_golden["shift_case"]
    model, (video, audio) = run_unet(unet_golden, shift=True, window_shifts=case["shifts"])
    assert rel_err(video, case["outputs"]["video"]) <= TOL
    assert rel_err(audio, case["outputs"]["audio"]) <= TOL
    assert model.last_window_shifts == list(case["shifts"])
    # Ignoring the shifts must be visibly wrong (the test can fail).
    assert rel_err(video, unet_golden["outputs"]["video"]) > 1e-2


def test_sr(sr_golden: dict[str, Any]) -> None:
    cfg = SRConfig.preset("tiny")
    assert sr_golden["config"]["attention_resolutions"] == list(cfg.attention_resolutions)
    model = build_sr(cfg)
    load(model, sr_golden["state_dict"])
    x = sr_golden["inputs"]
    with torch.no_grad():
        out = model(x["x"], x["timesteps"], x["low_res"])
    assert out.shape == (2, 6, 32, 32)
    assert rel_err(out, sr_golden["outputs"]["out"]) <= TOL


@pytest.mark.parametrize(("precision", "bound"), [("fp16", 2e-2), ("bf16", 1.5e-1)])
def test_unet_half_precision(unet_golden: dict[str, Any], precision: str, bound: float) -> None:
    _, (video, audio) = run_unet(unet_golden, shift=False, precision=precision)
    assert video.dtype == audio.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert rel_err(video, unet_golden["outputs"]["video"]) <= bound
    assert rel_err(audio, unet_golden["outputs"]["audio"]) <= bound


@pytest.mark.parametrize(("precision", "bound"), [("fp16", 5e-3), ("bf16", 4e-2)])
def test_sr_half_precision(sr_golden: dict[str, Any], precision: str, bound: float) -> None:
    model = build_sr(SRConfig.preset("tiny"))
    load(model, sr_golden["state_dict"])
    apply_precision(model, precision)
    assert model.out[2].weight.dtype == torch.float32  # the out head stays fp32
    x = sr_golden["inputs"]
    with torch.no_grad():
        out = model(x["x"], x["timesteps"], x["low_res"])
    assert out.dtype == torch.float32
    assert rel_err(out, sr_golden["outputs"]["out"]) <= bound


def test_official_fp16_conversion_counts() -> None:
    """convert_to_fp16 touches 622 base entries (131,088,388 params) and 274 SR entries."""
    with torch.device("meta"):
        base = apply_precision(build_unet(UNetConfig.preset("landscape")), "fp16")
        sr = apply_precision(build_sr(SRConfig.preset("official")), "fp16")
    for model, entries, params in ((base, 622, 131_088_388), (sr, 274, 280_340_160)):
        half = {k: v for k, v in model.state_dict().items() if v.dtype == torch.float16}
        assert len(half) == entries
        assert sum(v.numel() for v in half.values()) == params
        assert not any(".GroupNorm." in k or "emb_layers" in k or "time_embed" in k for k in half)

"""Official base/SR configs have exactly the checkpoint layout of the reference (TSV files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from model import build_sr, build_unet
from model.checkpoint import load
from model.config import SRConfig, UNetConfig

CASES = {
    "base": ("checkpoint-layout-base.tsv", 1046, 133_675_524),
    "sr": ("checkpoint-layout-sr.tsv", 566, 311_027_910),
}


def read_layout(path: Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """TSV ``key<TAB>shape<TAB>dtype`` -> ({key: shape}, total parameters from the footer)."""
    shapes: dict[str, tuple[int, ...]] = {}
    total = -1
    for line in path.read_text().splitlines()[1:]:
        if line.startswith("# total parameters:"):
            total = int(line.split(":")[1])
            continue
        key, shape, dtype = line.split("\t")
        assert dtype == "float32"
        shapes[key] = tuple(int(s) for s in shape.split(","))
    return shapes, total


def build(kind: str, device: str) -> nn.Module:
    with torch.device(device):
        if kind == "base":
            return build_unet(UNetConfig.preset("landscape"))
        return build_sr(SRConfig.preset("official"))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_layout_matches_tsv(kind: str, fixtures_dir: Path) -> None:
    name, entries, params = CASES[kind]
    expected, total = read_layout(fixtures_dir / name)
    assert len(expected) == entries and total == params
    model = build(kind, "meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: got[k] for k in expected if got[k] != expected[k]} == {}
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(list(model.buffers())) == 0


def test_aist_preset_is_the_landscape_architecture() -> None:
    assert UNetConfig.preset("aist++") == UNetConfig.preset("landscape")
    assert SRConfig.preset("aist++") == SRConfig.preset("landscape") == SRConfig.preset("official")


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_synthesised_checkpoint_loads_strict(
    kind: str, dtype: torch.dtype, fixtures_dir: Path
) -> None:
    """A state dict made from the TSV (random tensors of those shapes) loads with strict=True."""
    expected, _ = read_layout(fixtures_dir / CASES[kind][0])
    gen = torch.Generator().manual_seed(0)
    # Random values only for a sample of tensors: filling 311M values is needlessly slow.
    keys = list(expected)
    sample = set(keys[:: max(1, len(keys) // 40)])
    sd = {
        k: (torch.randn(s, generator=gen).to(dtype) if k in sample else torch.zeros(s, dtype=dtype))
        for k, s in expected.items()
    }
    model = build(kind, "meta").to_empty(device="cpu")  # skip the (slow) random init
    info = load(model, sd)
    assert info.num_tensors == len(expected) and info.stripped_prefix is None
    state = model.state_dict()
    for k in sample:
        assert state[k].dtype == torch.float32
        torch.testing.assert_close(state[k], sd[k].float(), rtol=0, atol=0)

"""checkpoint.load: strict loading, readable errors with a guess, DDP prefix, wrappers, fp16."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model import build_sr, build_unet
from model.checkpoint import CheckpointError, load
from model.config import SRConfig, UNetConfig


@pytest.fixture(scope="module")
def tiny_unet_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        k: torch.randn_like(v)
        for k, v in build_unet(UNetConfig.preset("tiny")).state_dict().items()
    }


def test_load_from_path_fp16_tensors(tmp_path: Path, tiny_unet_sd: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({k: v.half() for k, v in tiny_unet_sd.items()}, path)
    model = build_unet(UNetConfig.preset("tiny"))
    info = load(model, path)
    assert info.source_dtypes == ("float16",)
    key = "input_blocks.0.0.video_conv.video_conv_spatial.weight"
    assert model.state_dict()[key].dtype == torch.float32
    torch.testing.assert_close(model.state_dict()[key], tiny_unet_sd[key].half().float())


def test_ddp_prefix_is_stripped_and_reported(
    tiny_unet_sd: dict[str, torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    wrapped = {"state_dict": {f"module.{k}": v for k, v in tiny_unet_sd.items()}}
    before = dict(wrapped["state_dict"])
    model = build_unet(UNetConfig.preset("tiny"))
    with caplog.at_level(logging.WARNING, logger="model.checkpoint"):
        info = load(model, wrapped)
    assert info.stripped_prefix == "module." and info.wrapper_key == "state_dict"
    assert "module." in caplog.text
    assert wrapped["state_dict"] == before  # the caller's dict is untouched
    key = "time_embed.0.weight"
    torch.testing.assert_close(model.state_dict()[key], tiny_unet_sd[key])


def test_base_checkpoint_into_sr_model_says_so(tiny_unet_sd: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CheckpointError) as err:
        load(build_sr(SRConfig.preset("tiny")), tiny_unet_sd)
    msg = str(err.value)
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "base (coupled audio-video U-Net) checkpoint" in msg and "SR" in msg
    assert "more)" in msg  # only the first few keys are listed


def test_wrong_preset_lists_shape_mismatches(tiny_unet_sd: dict[str, torch.Tensor]) -> None:
    model = build_unet(UNetConfig.preset("tiny").with_(model_channels=64))
    with pytest.raises(CheckpointError) as err:
        load(model, tiny_unet_sd)
    msg = str(err.value)
    assert "shape mismatches" in msg and "time_embed.0.weight: checkpoint [32, 32] vs model" in msg
    assert "check the preset" in msg


def test_missing_and_unexpected_keys(tiny_unet_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(tiny_unet_sd)
    sd.pop("video_out.2.video_conv.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 missing keys: video_out\.2\.video_conv\.bias"):
        load(build_unet(UNetConfig.preset("tiny")), sd)


def test_missing_file_and_non_dict(tmp_path: Path) -> None:
    model = build_sr(SRConfig.preset("tiny"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(model, tmp_path / "nope.pt")
    bad = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], bad)
    with pytest.raises(CheckpointError, match="expected a dict of tensors"):
        load(model, bad)

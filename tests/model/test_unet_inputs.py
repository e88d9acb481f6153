"""U-Net/SR input validation, seeded window shifts and config flag parsing."""

from __future__ import annotations

import pytest
import torch

from model import build_sr, build_unet
from model.config import SRConfig, UNetConfig


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_unet(UNetConfig.preset("tiny"))

    def no_compute(*_: object) -> None:
        raise AssertionError("validation must happen before any compute")

    model.time_embed.register_forward_pre_hook(no_compute)
    return model


def _inputs(b: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 8, 3, 16, 16, generator=g), torch.randn(b, 1, 2048, generator=g),
            torch.full((b,), 500.0))


@pytest.mark.parametrize(
    ("video", "audio", "t", "match"),
    [
        ((1, 7, 3, 16, 16), (1, 1, 2048), (1,), r"video must be \[B, 8, 3, H, W\]"),
        ((1, 8, 4, 16, 16), (1, 1, 2048), (1,), r"video must be \[B, 8, 3, H, W\]"),
        ((1, 3, 8, 16, 16), (1, 1, 2048), (1,), r"frames before channels"),
        ((1, 8, 3, 12, 16), (1, 1, 2048), (1,), r"divisible by 8 \(e\.g\. \[B, 8, 3, 16, 16\]\)"),
        ((1, 8, 3, 16, 16), (1, 1, 2000), (1,), r"audio must be \[1, 1, 2048\]"),
        ((1, 8, 3, 16, 16), (2, 1, 2048), (1,), r"audio must be \[1, 1, 2048\]"),
        ((1, 8, 3, 16, 16), (1, 2, 2048), (1,), r"audio must be \[1, 1, 2048\]"),
        ((1, 8, 3, 16, 16), (1, 1, 2048), (3,), r"timesteps must be \[1\]"),
    ],
)
def test_bad_shapes_raise_before_compute(unet, video, audio, t, match) -> None:
    with pytest.raises(ValueError, match=match):
        unet(torch.zeros(video), torch.zeros(audio), torch.zeros(t))


def test_window_shifts_are_validated(unet) -> None:
    v, a, t = _inputs()
    model = build_unet(UNetConfig.preset("tiny"))
    with pytest.raises(ValueError, match=r"window_shifts\[0\] = 8 .*expected 0\.\.7"):
        model(v, a, t, window_shifts=[8] + [0] * 9)
    with pytest.raises(ValueError, match="has 2 values; this model makes 10 cross-attention"):
        model(v, a, t, window_shifts=[0, 0])
    with pytest.raises(ValueError, match="makes 10 cross-attention calls"):
        model(v, a, t, window_shifts=[0] * 11)


def test_seeded_shifts_reproduce() -> None:
    torch.manual_seed(0)
    model = build_unet(UNetConfig.preset("tiny"))
    v, a, t = _inputs(2)
    runs = {}
    with torch.no_grad():
        for seed in (3, 3, 4):
            out = model(v, a, t, generator=torch.Generator().manual_seed(seed))
            runs.setdefault(seed, []).append((out, list(model.last_window_shifts)))
    (o1, s1), (o2, s2) = runs[3]
    o3, s3 = runs[4][0]
    assert s1 == s2 and torch.equal(o1[0], o2[0]) and torch.equal(o1[1], o2[1])
    assert s1 != s3 and not torch.equal(o1[0], o3[0])
    assert len(s1) == 10 and s1[3] == 0  # the middle block is never shifted
    # replaying the recorded shifts reproduces the seeded run exactly
    with torch.no_grad():
        replay = model(v, a, t, window_shifts=s1)
    assert torch.equal(replay[0], o1[0]) and torch.equal(replay[1], o1[1])


def test_sr_bad_shapes() -> None:
    sr = build_sr(SRConfig.preset("tiny"))
    x, lr, t = torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 8, 8), torch.zeros(2)
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\] with H, W divisible by 4"):
        sr(torch.zeros(2, 3, 30, 32), t, lr)
    with pytest.raises(ValueError, match=r"low_res must be \[2, 3, h, w\]"):
        sr(x, t, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"timesteps must be \[2\]"):
        sr(x, torch.zeros(3), lr)
    out = sr(torch.zeros(1, 3, 64, 64), torch.zeros(1), torch.zeros(1, 3, 16, 16))
    assert out.shape == (1, 6, 64, 64)  # fully convolutional: tiny SR also does 16 -> 64


def test_official_flags() -> None:
    flags = dict(video_size="16,3,64,64", audio_size="1,25600", num_channels=128,
                 num_res_blocks=2, cross_attention_resolutions="2,4,8",
                 cross_attention_windows="1,4,8", cross_attention_shift=True,
                 video_attention_resolutions="2,4,8", audio_attention_resolutions="-1",
                 num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
                 resblock_updown=True, learn_sigma=False, use_fp16=True, diffusion_steps=1000)
    assert UNetConfig.from_official_flags(**flags) == UNetConfig.preset("landscape")
    sr_flags = dict(large_size=256, small_size=64, sr_num_channels=192, sr_num_res_blocks=2,
                    sr_attention_resolutions="8,16,32", sr_num_heads=4,
                    sr_use_scale_shift_norm=True, sr_resblock_updown=True, sr_learn_sigma=True)
    assert SRConfig.from_official_flags(**sr_flags) == SRConfig.preset("official")
    merged = {**flags, **sr_flags}  # the sampling script passes both sets together
    assert UNetConfig.from_official_flags(**merged) == UNetConfig.preset("landscape")
    assert SRConfig.from_official_flags(**merged) == SRConfig.preset("official")
    with pytest.raises(ValueError, match=r"unknown U-Net flags \['num_chanels'\]"):
        UNetConfig.from_official_flags(num_chanels=128)
    with pytest.raises(ValueError, match="no default channel_mult for size 48"):
        UNetConfig.from_official_flags(video_size="16,3,48,48")
    with pytest.raises(ValueError, match="unknown U-Net preset 'foo'"):
        UNetConfig.preset("foo")

"""The CPU fast paths of the shared layers equal their plain definitions.

``temporal_conv`` vs ``nn.Conv1d`` on the permuted ``[B*S, C, F]`` view, ``channel_mix`` vs
``torch.matmul``, ``_video_up`` vs ``F.interpolate``, the video GroupNorm
(two-pass statistics, FiLM, SiLU) vs ``F.group_norm`` on ``[B, C, F, H, W]``, and the strided
cross-attention windows vs an explicit index gather.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.attention import _windows
from model.nn import channel_mix, group_norm_act, temporal_conv
from model.unet import _video_up


def test_temporal_conv_matches_conv1d() -> None:
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv1d(8, 6, 3, padding=1)
    x = torch.randn(2, 5, 8, 7, generator=g)  # [B, F, C, S]
    b, f, c, s = x.shape
    ref = conv(x.permute(0, 3, 2, 1).reshape(b * s, c, f)).reshape(b, s, 6, f).permute(0, 3, 2, 1)
    with torch.no_grad():
        torch.testing.assert_close(temporal_conv(x, conv), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", [False, True])
def test_video_group_norm_film_silu_matches_group_norm(grad: bool) -> None:
    g = torch.Generator().manual_seed(1)
    gn = nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.copy_(torch.randn(8, generator=g))
        gn.bias.copy_(torch.randn(8, generator=g))
    # a large common offset: a one-pass E[x^2] - E[x]^2 would lose digits here
    video = torch.randn(2, 3, 8, 4, 5, generator=g) * 2 + 50
    scale, shift = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    ref = F.group_norm(video.double().transpose(1, 2), 4, gn.weight.double(), gn.bias.double(),
                       gn.eps).transpose(1, 2)
    ref = F.silu(ref * (1 + scale.double()[:, None, :, None, None])
                 + shift.double()[:, None, :, None, None])
    with torch.set_grad_enabled(grad):
        ours = group_norm_act(video, gn, scale, shift, silu=True)
    assert ours.shape == video.shape and ours.dtype == video.dtype
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    plain = group_norm_act(video, gn)  # no FiLM, no SiLU
    ref_plain = F.group_norm(video.transpose(1, 2), 4, gn.weight, gn.bias, gn.eps).transpose(1, 2)
    torch.testing.assert_close(plain, ref_plain, rtol=1e-5, atol=1e-5)


def test_video_group_norm_is_differentiable() -> None:
    gn = nn.GroupNorm(2, 4)
    video = torch.randn(1, 3, 4, 2, 2, requires_grad=True)
    group_norm_act(video, gn, silu=True).square().sum().backward()
    ref_in = video.detach().clone().requires_grad_()
    F.silu(F.group_norm(ref_in.transpose(1, 2), 2, gn.weight, gn.bias, gn.eps)).square().sum() \
        .backward()
    torch.testing.assert_close(video.grad, ref_in.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("frames", "seg", "extra", "window", "shift"),
                         [(4, 3, 0, 1, 0), (4, 3, 0, 1, 2), (4, 3, 0, 2, 1), (4, 3, 2, 3, 1),
                          (5, 2, 1, 5, 0)])
def test_windows_match_index_gather(frames: int, seg: int, extra: int, window: int,
                                    shift: int) -> None:
    total = frames * seg + extra
    x = torch.randn(2, total, 3, 4)[:, :, 1:]  # a strided slice, as the k/v part of qkv
    ours = _windows(x, frames, seg, window, shift)
    idx = [[((f + shift) * seg + j) % total for j in range(window * seg)] for f in range(frames)]
    torch.testing.assert_close(ours, x[:, torch.tensor(idx)], rtol=0, atol=0)


def test_channel_mix_matches_matmul_for_strided_input() -> None:
    w = torch.randn(6, 4)
    x = torch.randn(2, 3, 5, 4).transpose(-1, -2)  # [2, 3, 4, 5], not contiguous
    out = channel_mix(w, x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, torch.matmul(w, x), rtol=1e-6, atol=1e-6)


def test_video_up_equals_nearest_interpolate() -> None:
    x = torch.randn(2, 3, 5, 6, 4).permute(0, 1, 4, 2, 3)  # [B, F, C, H, W], strided
    ref = F.interpolate(x.reshape(6, 4, 5, 6), scale_factor=2.0, mode="nearest")
    out = _video_up(x)
    assert out.is_contiguous()
    assert torch.equal(out, ref.reshape(2, 3, 4, 10, 12))

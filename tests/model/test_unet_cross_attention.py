"""The batched cross-attention equals a plain per-frame loop written from the spec (3.6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.attention import CrossAttention


def reference(mod: CrossAttention, video: torch.Tensor, audio: torch.Tensor, s: int):
    """Per-frame loop over explicit index lists, math attention, GN via F.group_norm."""
    b, nf, c, h, w = video.shape
    length = audio.shape[-1]
    S, nv, p = h * w, nf * h * w, length // nf
    nh, d = mod.num_heads, c // mod.num_heads
    gv, ga = mod.v_norm.GroupNorm, mod.a_norm.GroupNorm
    vt = F.group_norm(video.transpose(1, 2), 32, gv.weight, gv.bias, gv.eps).reshape(b, c, nv)
    at = F.group_norm(audio, 32, ga.weight, ga.bias, ga.eps)
    x = torch.cat([F.conv1d(vt, mod.v_qkv.weight, mod.v_qkv.bias),
                   F.conv1d(at, mod.a_qkv.weight, mod.a_qkv.bias)], dim=-1)
    q, k, v = (t.reshape(b, nh, d, -1) for t in x.chunk(3, dim=1))
    out = torch.zeros_like(q)
    sc = d ** -0.25

    def attend(qi: list[int], ki: list[int]) -> None:
        wts = torch.einsum("bhct,bhcs->bhts", q[..., qi] * sc, k[..., ki] * sc).softmax(-1)
        out[..., qi] = torch.einsum("bhts,bhcs->bhct", wts, v[..., ki])

    for f in range(nf):
        attend(list(range(f * S, f * S + S)),
               [nv + ((f + s) * p + j) % length for j in range(mod.window * p)])
        end = (f + 1) * p if f < nf - 1 else length
        attend([nv + i for i in range(f * p, end)],
               [((f + s) * S + j) % nv for j in range(mod.window * S)])
    out_v = out[..., :nv].reshape(b, c, nf, h, w).transpose(1, 2)
    out_a = out[..., nv:].reshape(b, c, length)
    return video + mod.video_proj_out(out_v), audio + mod.audio_proj_out(out_a)


@pytest.mark.parametrize(
    ("length", "window", "shift"),
    [(12, 1, 0), (12, 1, 3), (12, 2, 1), (14, 2, 2), (14, 4, 0), (13, 6, 0), (12, 3, 1)],
)
def test_matches_loop_reference(length: int, window: int, shift: int) -> None:
    g = torch.Generator().manual_seed(length * 100 + window * 10 + shift)
    mod = CrossAttention(64, 4, window, shift=True, name="t")
    with torch.no_grad():
        for prm in mod.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.3)
    video = torch.randn(2, 4, 64, 2, 3, generator=g)
    audio = torch.randn(2, 64, length, generator=g)
    with torch.no_grad():
        # windows longer than the clip (6 > 4 frames) allow only shift 0
        ours = mod(video, audio, [shift])
        ref = reference(mod, video, audio, shift)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-5)


def test_cached_indices_survive_inference_mode_then_backward() -> None:
    """Index tables first built under inference_mode must still work with autograd."""
    mod = CrossAttention(64, 4, 2, shift=True, name="t")
    video, audio = torch.randn(1, 4, 64, 2, 2), torch.randn(1, 64, 16)
    with torch.inference_mode():
        mod(video, audio, [1])
    v = video.clone().requires_grad_()
    out_v, out_a = mod(v, audio, [1])
    (out_v.sum() + out_a.sum()).backward()
    assert v.grad is not None and v.grad.abs().sum() > 0

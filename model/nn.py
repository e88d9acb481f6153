"""Small shared layers: float32 GroupNorm, timestep embedding, conv wrappers with official keys.

Video tensors are ``[B, F, C, H, W]`` (frames before channels), audio ``[B, C, L]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AudioConv",
    "Norm",
    "TimeEmbed",
    "VideoConv2p1",
    "VideoConv3d",
    "channel_mix",
    "group_norm_act",
    "group_norm_fp32",
    "pointwise",
    "timestep_embedding",
    "video_group_norm",
]

GROUPS = 32
EPS = 1e-5


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[B] -> [B, dim]``, cosine half first, real-valued ``t`` allowed."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbed(nn.Sequential):
    """``Linear(D -> E), SiLU, Linear(E -> E)`` (keys ``0`` and ``2``), always run in float32."""

    def __init__(self, dim: int, embed_dim: int) -> None:
        super().__init__(nn.Linear(dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:  # type: ignore[override]
        """``t [B]`` -> ``[B, E]`` float32."""
        return super().forward(timestep_embedding(t, self.dim))


def group_norm_fp32(x: Tensor, gn: nn.GroupNorm) -> Tensor:
    """GroupNorm of ``[N, C, ...]`` evaluated in float32, result in ``x``'s dtype."""
    return F.group_norm(x.float(), gn.num_groups, gn.weight, gn.bias, gn.eps).to(x.dtype)


def group_norm_act(
    x: Tensor, gn: nn.GroupNorm, scale: Tensor | None = None, shift: Tensor | None = None,
    *, silu: bool = False,
) -> Tensor:
    """GroupNorm (float32 statistics) with optional FiLM and SiLU fused into one pass.

    ``x`` is video ``[B, F, C, H, W]`` (statistics over group channels x all frames, computed on
    the native layout without a permute copy) or channel-first ``[N, C, ...]`` (images, audio).
    ``scale``/``shift`` ``[B, C]`` give ``GN(x) * (1 + scale) + shift``. Returns ``x``'s dtype.
    """
    if x.dim() == 5:
        return _video_group_norm_act(x, gn, scale, shift, silu=silu)
    n, c = x.shape[0], x.shape[1]
    g = gn.num_groups
    xf = x.float()
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and c > 1:
        # NHWC storage: group the channel axis of the [N, H, W, C] view (no copy)
        grouped, dims = xf.permute(0, 2, 3, 1).reshape(n, -1, g, c // g), (1, 3)
    else:
        grouped, dims = xf.reshape(n, g, -1), (2,)
    var, mean = torch.var_mean(grouped, dim=dims, unbiased=False)  # [N, G]
    a, b = _film(gn, torch.rsqrt(var + gn.eps), scale, shift)
    b = b - (mean[:, :, None] * a.view(n, g, c // g)).reshape(n, c)
    view = (n, c) + (1,) * (x.dim() - 2)
    out = torch.addcmul(b.view(view), xf, a.view(view)).to(x.dtype)
    if silu:
        out = F.silu(out, inplace=not torch.is_grad_enabled())
    return out


def _film(gn: nn.GroupNorm, rstd: Tensor, scale: Tensor | None,
          shift: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-sample channel factors ``a``, ``b`` ``[N, C]`` with ``GN(x) * (1 + scale) + shift =
    (x - mean) * a + b`` for ``rstd [N, G]``."""
    n, g = rstd.shape
    c = gn.weight.shape[0]
    a = (gn.weight.float().view(1, g, c // g) * rstd[:, :, None]).reshape(n, c)
    b = gn.bias.float().view(1, c).expand(n, c)
    if scale is not None and shift is not None:
        a = a * (1 + scale.float())
        b = b * (1 + scale.float()) + shift.float()
    return a, b


def _video_group_norm_act(x: Tensor, gn: nn.GroupNorm, scale: Tensor | None,
                          shift: Tensor | None, *, silu: bool) -> Tensor:
    """:func:`group_norm_act` of video ``[B, F, C, H, W]``, two-pass statistics.

    Mean, then the norm of the centred values, each reduced over the contiguous rows of one
    frame's group first (vectorised, cascade-summed) and then over frames; the centred copy is
    then scaled in place. About 2-4x less CPU time than ``torch.var_mean`` over the strided
    (frames, group) dims, and as precise (float64 check: ~1.5e-7 relative either way).
    """
    n, f, c = x.shape[:3]
    g = gn.num_groups
    grouped = x.float().reshape(n, f, g, -1)
    count = f * grouped.shape[3]
    mean = grouped.sum(dim=3, keepdim=True).sum(dim=1, keepdim=True) / count  # [N, 1, G, 1]
    centred = grouped - mean
    var = torch.linalg.vector_norm(centred, dim=3).square().sum(dim=1) / count  # [N, G]
    a, b = _film(gn, torch.rsqrt(var + gn.eps), scale, shift)
    out = centred.view(n, f, c, -1)
    # out= variants are not differentiable, and dynamo graph-breaks on them
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        out = torch.addcmul(b.reshape(n, 1, c, 1), out, a.reshape(n, 1, c, 1))
    else:
        torch.addcmul(b.reshape(n, 1, c, 1), out, a.reshape(n, 1, c, 1), out=out)
    if silu:
        out = F.silu(out, inplace=not torch.is_grad_enabled())
    return out.view(x.shape).to(x.dtype)


def video_group_norm(x: Tensor, gn: nn.GroupNorm) -> Tensor:
    """GroupNorm of video ``[B, F, C, H, W]`` jointly over frames (see :func:`group_norm_act`)."""
    return group_norm_act(x, gn)


class Norm(nn.Module):
    """Base-model norm wrapper: holds ``GroupNorm`` (keys ``*.GroupNorm.{weight,bias}``).

    Video input ``[B, F, C, H, W]`` is normalised jointly over frames; 3-D input ``[N, C, T]``
    is an ordinary GroupNorm. Always evaluated in float32.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.GroupNorm = nn.GroupNorm(GROUPS, channels, eps=EPS)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            return group_norm_act(x, self.GroupNorm)
        return group_norm_fp32(x, self.GroupNorm)


def channel_mix(w: Tensor, x: Tensor) -> Tensor:
    """``w [Co, C]`` applied to every ``[C, S]`` matrix of ``x [..., C, S]`` -> ``[..., Co, S]``,
    contiguous: one batched GEMM with a broadcast weight. (``torch.matmul`` folds large 2-D @
    N-D products into ``(x^T w^T)^T``: a transposed copy of ``x`` in, and a transposed,
    non-contiguous result out that the next layer copies again.)"""
    xs = x.reshape(-1, x.shape[-2], x.shape[-1])
    out = torch.bmm(w.expand(xs.shape[0], -1, -1), xs)
    return out.view(*x.shape[:-2], w.shape[0], x.shape[-1])


def pointwise(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Channel mix on axis ``-3`` of ``[..., C, H, W]`` or ``-2`` of ``[..., C, T]``.

    ``weight`` is any conv weight ``[Co, Ci, 1, ...]``. Used for 1x1(x1) convolutions so the
    video never has to be permuted to ``[B, C, F, H, W]``.
    """
    w2 = weight.reshape(weight.shape[0], weight.shape[1])
    if x.dim() == 5:
        b, f, c, h, wd = x.shape
        out = channel_mix(w2, x.reshape(b, f, c, h * wd)).view(b, f, -1, h, wd)
        if bias is not None:
            out += bias.view(-1, 1, 1)
        return out
    out = channel_mix(w2, x)  # plain GEMM: about 2x faster than a 1x1 mkldnn conv here
    if bias is not None:
        out += bias.view(-1, *([1] * (x.dim() - 2)))
    return out


class VideoConv2p1(nn.Module):
    """Factorised "2d+1d" video conv: per-frame Conv2d(k) then per-pixel temporal Conv1d(k).

    ``[B, F, Ci, H, W] -> [B, F, Co, H, W]``; keys ``video_conv_spatial``, ``video_conv_temporal``.
    """

    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__()
        self.video_conv_spatial = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.video_conv_temporal = nn.Conv1d(cout, cout, k, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        b, f, c, h, w = x.shape
        frames = x.reshape(b * f, c, h, w)
        if self.video_conv_spatial.weight.is_contiguous(memory_format=torch.channels_last):
            frames = frames.contiguous(memory_format=torch.channels_last)  # oneDNN's fast path
        y = self.video_conv_spatial(frames)
        co = y.shape[1]
        return temporal_conv(y.reshape(b, f, co, h * w), self.video_conv_temporal).reshape(
            b, f, co, h, w
        )


def temporal_conv(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Conv1d along frames of ``x [B, F, C, S]`` for every pixel, zero "same" padding.

    Equals applying ``conv`` to the ``[B*S, C, F]`` view, without the permute copies or a padded
    copy: the centre tap is one batched GEMM over all frames, each other tap accumulates into
    the frames it reaches (``baddbmm_``, loops only over batch and taps). The taps are first
    copied into one contiguous ``[k, Co, C]`` block: a strided ``weight[:, :, i]`` slice makes
    ``baddbmm_`` fall back to one GEMM plus one weight copy per frame.
    """
    b, f, _c, _s = x.shape
    k = conv.kernel_size[0]
    taps = conv.weight.permute(2, 0, 1).contiguous()  # [k, Co, C]
    centre = k // 2
    out = channel_mix(taps[centre], x)  # [B, F, Co, S]
    if conv.bias is not None:
        out += conv.bias[:, None]
    for i in range(k):
        off = i - centre
        if i == centre or abs(off) >= f:
            continue
        n = f - abs(off)
        wi = taps[i].expand(n, -1, -1)
        for j in range(b):
            dst = out[j, max(0, -off):max(0, -off) + n]
            dst.baddbmm_(wi, x[j, max(0, off):max(0, off) + n])
    return out


class VideoConv3d(nn.Module):
    """"3d" video conv wrapper (key ``video_conv``): Conv3d over (F, H, W), "same" padding."""

    def __init__(self, cin: int, cout: int, k: int = 1) -> None:
        super().__init__()
        self.video_conv = nn.Conv3d(cin, cout, k, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.video_conv.kernel_size == (1, 1, 1):
            return pointwise(x, self.video_conv.weight, self.video_conv.bias)
        y = self.video_conv(x.transpose(1, 2))  # [B, C, F, H, W]
        return y.transpose(1, 2).contiguous()


class AudioConv(nn.Module):
    """Audio conv wrapper (key ``audio_conv``): Conv1d(k, dilation d), zero "same" padding."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.audio_conv = nn.Conv1d(cin, cout, k, padding=dilation * (k - 1) // 2,
                                    dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.audio_conv(x)

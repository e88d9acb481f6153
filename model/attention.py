"""Self-attention layers and the random-shift multi-modal cross-attention (RS-MMA).

All attention goes through ``F.scaled_dot_product_attention`` with the explicit scale
``d^-1/4 * d^-1/4``. The cross-attention gathers every frame's window with cached index tables
and runs all frames and heads as one batched SDPA call (no Python loop over frames or heads).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.nn import AudioConv, Norm, VideoConv3d, group_norm_fp32, pointwise

__all__ = ["SelfAttention", "LegacyAttention", "CrossAttention", "ShiftSource", "sdpa"]


def _scale(d: int) -> float:
    s = float(d) ** -0.25
    return s * s


def sdpa(q: Tensor, k: Tensor, v: Tensor, *, upcast: bool) -> Tensor:
    """Attention over ``[..., T, d]`` tensors with the official ``d^-1/4`` split scale.

    ``upcast`` evaluates in float32 (the official self-attention softmax is float32); the
    result is returned in ``q``'s dtype.
    """
    d = q.shape[-1]
    if upcast and q.dtype != torch.float32:
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=_scale(d))
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, scale=_scale(d))


class SelfAttention(nn.Module):
    """Base-model single-modal attention: ``x [N, C, T] -> x + proj_out(attn(qkv(GN(x))))``.

    qkv channels are split into thirds (q, k, v) first, then into ``num_heads`` heads.
    Keys: ``norm.GroupNorm.*``, ``qkv.*`` (Conv1d C->3C), ``proj_out.*`` (Conv1d C->C).
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = Norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t = x.shape
        h, d = self.num_heads, c // self.num_heads
        qkv = pointwise(self.norm(x), self.qkv.weight, self.qkv.bias)  # [N, 3C, T]
        qkv = qkv.reshape(n, 3, h, d, t).transpose(-1, -2)  # [N, 3, H, T, d]
        out = sdpa(qkv[:, 0], qkv[:, 1], qkv[:, 2], upcast=True)  # [N, H, T, d]
        out = out.transpose(-1, -2).reshape(n, c, t)
        return x + pointwise(out, self.proj_out.weight, self.proj_out.bias)


class LegacyAttention(nn.Module):
    """SR (guided-diffusion legacy order) attention over ``x [N, C, H, W]`` tokens.

    Heads are split first: head ``h`` owns channels ``[3hd, 3hd+3d)`` = q, k, v.
    Keys: ``norm.*`` (plain GroupNorm), ``qkv.*``, ``proj_out.*``.
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        t = hh * ww
        h, d = self.num_heads, c // self.num_heads
        xt = x.reshape(b, c, t)
        qkv = pointwise(group_norm_fp32(xt, self.norm), self.qkv.weight, self.qkv.bias)
        qkv = qkv.reshape(b, h, 3, d, t).transpose(-1, -2)  # [B, H, 3, T, d]
        out = sdpa(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], upcast=True)  # [B, H, T, d]
        out = out.transpose(-1, -2).reshape(b, c, t)
        out = pointwise(out, self.proj_out.weight, self.proj_out.bias)
        return x + out.reshape(b, c, hh, ww)


class ShiftSource:
    """Supplies one window shift per cross-attention call, in forward order.

    Either replays ``window_shifts`` (validated against each block's allowed range) or draws
    from ``generator`` with ``torch.randint`` (the global torch RNG when ``generator`` is None).
    ``used`` records every value handed out, including 0 for unshifted blocks.
    """

    def __init__(self, window_shifts: Sequence[int] | None, generator: torch.Generator | None):
        self._given = None if window_shifts is None else [int(s) for s in window_shifts]
        self._generator = generator
        self.used: list[int] = []

    def next(self, name: str, high: int, enabled: bool) -> int:
        """Shift for the next call; ``high`` is the largest allowed value (``F - window``)."""
        i = len(self.used)
        if self._given is not None:
            if i >= len(self._given):
                raise ValueError(
                    f"window_shifts has {len(self._given)} values but the forward pass needs more "
                    f"(one per cross-attention call, unshifted blocks included as 0)"
                )
            s = self._given[i]
            top = high if enabled else 0
            if not 0 <= s <= max(top, 0):
                raise ValueError(f"window_shifts[{i}] = {s} for {name}: expected 0..{max(top, 0)}")
        elif enabled and high > 0:
            dev = self._generator.device if self._generator is not None else "cpu"
            s = int(torch.randint(0, high + 1, (1,), generator=self._generator, device=dev).item())
        else:
            s = 0
        self.used.append(s)
        return s

    def check_consumed(self) -> None:
        if self._given is not None and len(self._given) != len(self.used):
            raise ValueError(
                f"window_shifts has {len(self._given)} values; this model makes "
                f"{len(self.used)} cross-attention calls per forward"
            )


@lru_cache(maxsize=512)
def _window_index(
    frames: int, seg: int, total: int, window: int, shift: int, device: torch.device
) -> Tensor:
    """``[F, window*seg]`` positions ``((f + shift)*seg + j) mod total`` (cached)."""
    f = torch.arange(frames, device=device)[:, None]
    j = torch.arange(window * seg, device=device)[None]
    return ((f + shift) * seg + j) % total


class CrossAttention(nn.Module):
    """Random-shift multi-modal cross-attention between video ``[B, F, C, H, W]`` and audio
    ``[B, C, L]`` (ARCHITECTURE.md 3.6).

    Frame ``f`` of the video attends to the audio segments of frames ``f+s .. f+s+W-1`` and audio
    segment ``f`` attends to the video frames of that window (cyclic). Softmax runs in the
    working dtype (no float32 upcast), as in the official model.
    """

    def __init__(self, channels: int, num_heads: int, window: int, shift: bool, name: str = ""):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.shift = shift
        self.name = name
        self.v_norm = Norm(channels)
        self.a_norm = Norm(channels)
        self.v_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.a_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.video_proj_out = VideoConv3d(channels, channels, 1)
        self.audio_proj_out = AudioConv(channels, channels, 1)

    def forward(self, video: Tensor, audio: Tensor, shifts: ShiftSource) -> tuple[Tensor, Tensor]:
        b, nf, c, hh, ww = video.shape
        length = audio.shape[-1]
        s_tok, nv = hh * ww, nf * hh * ww
        nh, d = self.num_heads, c // self.num_heads
        p = length // nf
        s = shifts.next(self.name, nf - self.window, self.shift)

        qv = pointwise(self.v_norm(video), self.v_qkv.weight, self.v_qkv.bias)  # [B,F,3C,H,W]
        qv = qv.reshape(b, nf, 3, nh, d, s_tok).permute(2, 0, 3, 1, 5, 4)  # [3,B,nh,F,S,d]
        qa = pointwise(self.a_norm(audio), self.a_qkv.weight, self.a_qkv.bias)  # [B,3C,L]
        qa = qa.reshape(b, 3, nh, d, length).permute(1, 0, 2, 4, 3)  # [3,B,nh,L,d]

        # video -> audio: every frame's S queries see a window of audio samples
        idx_a = _window_index(nf, p, length, self.window, s, audio.device)  # [F, W*p]
        ka, va = qa[1][:, :, idx_a], qa[2][:, :, idx_a]  # [B,nh,F,W*p,d]
        out_v = sdpa(qv[0], ka, va, upcast=False)  # [B,nh,F,S,d]
        out_v = out_v.permute(0, 2, 1, 4, 3).reshape(b, nf, c, hh, ww)

        # audio -> video: audio segment f sees the video frames of its window
        idx_v = _window_index(nf, s_tok, nv, self.window, s, video.device)  # [F, W*S]
        kv = qv[1].reshape(b, nh, nv, d)[:, :, idx_v]  # [B,nh,F,W*S,d]
        vv = qv[2].reshape(b, nh, nv, d)[:, :, idx_v]
        qa_main = qa[0][:, :, : nf * p].reshape(b, nh, nf, p, d)
        out_a = sdpa(qa_main, kv, vv, upcast=False).reshape(b, nh, nf * p, d)
        if length > nf * p:  # the last segment absorbs the remainder
            rest = sdpa(qa[0][:, :, nf * p:], kv[:, :, -1], vv[:, :, -1], upcast=False)
            out_a = torch.cat([out_a, rest], dim=2)
        out_a = out_a.transpose(-1, -2).reshape(b, c, length)

        return video + self.video_proj_out(out_v), audio + self.audio_proj_out(out_a)


AttnFn = Callable[[Tensor], Tensor]

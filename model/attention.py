"""Self-attention layers and the random-shift multi-modal cross-attention (RS-MMA).

All attention goes through ``F.scaled_dot_product_attention`` with the explicit scale
``d^-1/4 * d^-1/4``. The cross-attention gathers every frame's window with cached index tables
and runs all frames and heads as one batched SDPA call (no Python loop over frames or heads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from model.nn import AudioConv, Norm, VideoConv3d, group_norm_fp32

__all__ = [
    "SDPA_BACKENDS",
    "CrossAttention",
    "LegacyAttention",
    "SelfAttention",
    "ShiftSource",
    "Shifts",
    "get_sdpa_backend",
    "sdpa",
    "set_sdpa_backend",
    "shift_table",
]

# MMD_SDPA_BACKEND: "auto" lets torch pick (fused flash / memory-efficient when eligible);
# the others restrict every attention call of this process to those kernels.
SDPA_BACKENDS: dict[str, tuple[SDPBackend, ...]] = {
    "auto": (),
    "math": (SDPBackend.MATH,),
    "flash": (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH),
    "efficient": (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH),
    "cudnn": (SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH),
}
_backend: list[str] = ["auto"]  # process-wide, like torch's own SDPA backend flags


def set_sdpa_backend(name: str) -> None:
    """Restrict the attention kernels of every model in this process (``MMD_SDPA_BACKEND``).

    ``"math"`` is what the official code computes; ``"flash"`` / ``"efficient"`` / ``"cudnn"``
    prefer that fused kernel and fall back to math where it is not eligible; ``"auto"`` = torch's
    own choice. ValueError names the accepted values.
    """
    if name not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {name!r}; expected one of {sorted(SDPA_BACKENDS)}")
    _backend[0] = name


def get_sdpa_backend() -> str:
    """The name set by :func:`set_sdpa_backend` (``"auto"`` by default)."""
    return _backend[0]


def _scale(d: int) -> float:
    s = float(d) ** -0.25
    return s * s


def sdpa(q: Tensor, k: Tensor, v: Tensor, *, upcast: bool) -> Tensor:
    """Attention over ``[..., T, d]`` tensors with the official ``d^-1/4`` split scale.

    ``upcast`` marks the layers whose softmax the official model evaluates in float32 (the
    self-attentions). The fused SDPA kernels (CPU flash, CUDA flash / memory-efficient) keep
    their softmax statistics in float32 for half inputs anyway, so the flag only matters for
    the math fallback, where half inputs are upcast explicitly. The cross-attention
    (``upcast=False``) therefore runs at least as precisely as the official fp16 softmax.
    """
    backends = SDPA_BACKENDS[_backend[0]]
    if backends:
        with sdpa_kernel(list(backends)):
            return _sdpa(q, k, v, upcast=upcast)
    return _sdpa(q, k, v, upcast=upcast)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, *, upcast: bool) -> Tensor:
    d = q.shape[-1]
    fused = _backend[0] != "math" and _fused_ok(q, k, v)  # math: upcast like the official code
    if upcast and q.dtype != torch.float32 and not fused:
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=_scale(d))
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, scale=_scale(d))


def _fused_ok(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """True when a fused kernel will likely run: 4-D inputs with a contiguous head dim."""
    return all(t.dim() == 4 and t.stride(-1) == 1 for t in (q, k, v))


def _w2(conv: nn.Conv1d) -> Tensor:
    return conv.weight.reshape(conv.weight.shape[0], conv.weight.shape[1])


def tokens_linear(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """1x1 conv of channel-major ``x [..., C, T]`` returned token-major ``[..., T, Co]``."""
    return F.linear(x.transpose(-1, -2), _w2(conv), conv.bias)


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
        qkv = tokens_linear(self.norm(x), self.qkv).view(n, t, 3, h, d)  # [N, T, 3, H, d]
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [N, H, T, d]
        out = sdpa(q, k, v, upcast=True).transpose(1, 2).reshape(n, t, c)
        return x + F.linear(out, _w2(self.proj_out), self.proj_out.bias).transpose(1, 2)


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
        qkv = tokens_linear(group_norm_fp32(xt, self.norm), self.qkv).view(b, t, h, 3, d)
        q, k, v = (qkv[:, :, :, i].transpose(1, 2) for i in range(3))  # [B, H, T, d]
        out = sdpa(q, k, v, upcast=True).transpose(1, 2).reshape(b, t, c)
        out = F.linear(out, _w2(self.proj_out), self.proj_out.bias).transpose(1, 2)
        return x + out.reshape(b, c, hh, ww)


class ShiftSource:
    """Supplies one window shift per cross-attention call, in forward order.

    Either replays ``window_shifts`` (validated against each block's allowed range) or draws
    from ``generator`` with ``torch.randint`` (the global torch RNG when ``generator`` is None).
    ``used`` records every value handed out, including 0 for unshifted blocks.
    """

    def __init__(self, window_shifts: Sequence[int] | None, generator: torch.Generator | None,
                 groups: Sequence[tuple[torch.Generator, int]] | None = None) -> None:
        """``groups``: per-sample shifts for a batch of independent jobs, one ``(generator,
        samples)`` pair per job in batch order; each job's generator draws exactly what it would
        draw alone, so a job gets the same shift sequence batched or not. When all groups draw
        the same value the call gets that int (the shared-shift path)."""
        self._given = None if window_shifts is None else [int(s) for s in window_shifts]
        self._generator = generator
        self._groups = None if groups is None else list(groups)
        self.used: list[int | list[int]] = []

    def next(self, name: str, high: int, enabled: bool) -> int | Tensor:
        """Shift for the next call; ``high`` is the largest allowed value (``F - window``).
        With ``groups`` whose draws differ: a CPU ``int64 [B]`` tensor of per-sample shifts."""
        i = len(self.used)
        if self._groups is not None:
            draws = [self._draw(g, high) if enabled and high > 0 else 0 for g, _ in self._groups]
            if all(d == draws[0] for d in draws):
                self.used.append(draws[0])
                return draws[0]
            self.used.append(draws)
            return torch.tensor(draws).repeat_interleave(torch.tensor([n for _, n in self._groups]))
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
            s = self._draw(self._generator, high)
        else:
            s = 0
        self.used.append(s)
        return s

    @staticmethod
    def _draw(generator: torch.Generator | None, high: int) -> int:
        dev = generator.device if generator is not None else "cpu"
        return int(torch.randint(0, high + 1, (1,), generator=generator, device=dev).item())

    def draw_all(self, calls: Sequence[tuple[str, int, bool]]) -> list[int | Tensor]:
        """One :meth:`next` per ``(name, high, enabled)`` call, in forward order (the same draws
        and validation as calling them one by one), then :meth:`check_consumed`."""
        values = [self.next(name, high, enabled) for name, high, enabled in calls]
        self.check_consumed()
        return values

    def check_consumed(self) -> None:
        if self._given is not None and len(self._given) != len(self.used):
            raise ValueError(
                f"window_shifts has {len(self._given)} values; this model makes "
                f"{len(self.used)} cross-attention calls per forward"
            )


# What a cross-attention call reads its shift from (drawn beforehand by ShiftSource.draw_all):
# a list of per-call values (int, or an int64 [B] tensor of per-sample shifts), or an int64
# [num_calls, B] table (row k = call k; the compiled path: shifts as data, not Python ints).
Shifts = Sequence[int | Tensor] | Tensor


def shift_table(values: Sequence[int | Tensor], batch: int, device: torch.device) -> Tensor:
    """``int64 [len(values), batch]`` table of per-call shifts from :meth:`ShiftSource.draw_all`
    values (an int fills its row; a ``[batch]`` tensor is its row)."""
    rows = [[v] * batch if isinstance(v, int) else [int(x) for x in v.tolist()] for v in values]
    return torch.tensor(rows, dtype=torch.int64, device=device).reshape(len(rows), batch)


def _sample_window_index(frames: int, seg: int, total: int, window: int, shifts: Tensor,
                         device: torch.device) -> Tensor:
    """``[B, F, window*seg]`` positions ``((f + shifts[b])*seg + j) mod total`` (one shift per
    sample; the shared-shift path uses :func:`_windows`)."""
    f = torch.arange(frames, device=device)[None, :, None]
    j = torch.arange(window * seg, device=device)[None, None]
    return ((f + shifts.to(device)[:, None, None]) * seg + j) % total


@lru_cache(maxsize=512)
def _ring_index(frames: int, seg: int, total: int, window: int, shift: int,
                device: torch.device) -> Tensor:
    """``[(F - 1 + window) * seg]`` positions ``(shift*seg + r) mod total`` (cached): the rows
    that :func:`_windows` lays out once so that every frame's window is a slice of them."""
    with torch.inference_mode(False):
        r = torch.arange((frames - 1 + window) * seg, device=device)
        return (shift * seg + r) % total


def _windows(x: Tensor, frames: int, seg: int, window: int, shift: int) -> Tensor:
    """Every frame's cyclic window of ``x [B, T, ...]`` as ``[B, F, window*seg, ...]``.

    Frame ``f`` gets rows ``((f + shift)*seg + j) mod T``, ``j < window*seg`` (as
    :func:`_sample_window_index` + :func:`_gather` give), but the windows overlap in memory: the
    rows are gathered once in ring order (``T + (window-1)*seg`` rows, not ``F*window*seg``) and
    each window is a strided view of them. No copy at all for ``shift == 0`` and ``window == 1``.
    Under ``torch.compile`` an ordinary gather (inductor crashed on the overlapping view).
    """
    total = x.shape[1]
    if torch.compiler.is_compiling():  # inductor: a plain gather (no overlapping strides)
        f = torch.arange(frames, device=x.device)[:, None]
        j = torch.arange(window * seg, device=x.device)[None]
        return x[:, ((f + shift) * seg + j) % total]
    if shift == 0 and window == 1 and frames * seg == total:
        ring = x
    else:
        ring = x[:, _ring_index(frames, seg, total, window, shift, x.device)].contiguous()
    size = (ring.shape[0], frames, window * seg, *ring.shape[2:])
    stride = (ring.stride(0), seg * ring.stride(1), *ring.stride()[1:])
    return ring.as_strided(size, stride)  # keeps ring's storage offset


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """Rows of ``x [B, T, ...]`` at ``idx [B, F, K]`` (per sample) -> ``[B, F, K, ...]``."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x[rows, idx]


class CrossAttention(nn.Module):
    """Random-shift multi-modal cross-attention between video ``[B, F, C, H, W]`` and audio
    ``[B, C, L]`` (ARCHITECTURE.md 3.6).

    Frame ``f`` of the video attends to the audio segments of frames ``f+s .. f+s+W-1`` and audio
    segment ``f`` attends to the video frames of that window (cyclic). The official model runs
    this softmax in the working dtype; the fused SDPA kernels used here keep float32 softmax
    statistics (identical in fp32, slightly more precise in fp16/bf16).
    """

    def __init__(self, channels: int, num_heads: int, window: int, shift: bool,
                 name: str = "") -> None:
        """``call_index``: this layer's position among the model's cross-attention calls in
        forward order (set by the U-Net); it picks the layer's entry of a list / table of
        shifts."""
        super().__init__()
        self.call_index = 0
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

    def forward(self, video: Tensor, audio: Tensor, shifts: Shifts) -> tuple[Tensor, Tensor]:
        """``shifts``: the per-call values (:meth:`ShiftSource.draw_all`) or their
        ``int64 [calls, B]`` table, indexed by ``call_index`` (see :data:`Shifts`). A table row
        is a tensor, so the per-sample gather runs: what a compiled graph needs to take the
        shifts as data instead of specialising on (and recompiling for) each int value."""
        b, nf, c, hh, ww = video.shape
        length = audio.shape[-1]
        s_tok, nv = hh * ww, nf * hh * ww
        nh, d = self.num_heads, c // self.num_heads
        p = length // nf
        s = shifts[self.call_index]

        # token-major projections: head dim innermost so SDPA can use its fused CPU kernel
        qkv_v = tokens_linear(self.v_norm(video).reshape(b, nf, c, s_tok), self.v_qkv)
        qkv_v = qkv_v.view(b, nf, s_tok, 3, nh, d)
        qkv_a = tokens_linear(self.a_norm(audio), self.a_qkv).view(b, length, 3, nh, d)

        def frames(x: Tensor) -> Tensor:  # [B, F, T, nh, d] -> [B*F, nh, T, d]
            return x.transpose(2, 3).reshape(b * nf, nh, x.shape[2], d)

        # video -> audio: the S queries of frame f see a window of W*p audio samples
        per_sample = isinstance(s, Tensor)  # batched independent jobs: [B] shifts
        if per_sample:
            idx_a = _sample_window_index(nf, p, length, self.window, s, audio.device)
            win_a = _gather(qkv_a[:, :, 1:], idx_a)  # [B, F, W*p, 2, nh, d]
        else:  # overlapping strided windows, no W-fold copy
            win_a = _windows(qkv_a[:, :, 1:], nf, p, self.window, s)
        ka, va = frames(win_a[:, :, :, 0]), frames(win_a[:, :, :, 1])
        out_v = sdpa(frames(qkv_v[:, :, :, 0]), ka, va, upcast=False)  # [B*F, nh, S, d]
        out_v = out_v.permute(0, 1, 3, 2).reshape(b, nf, c, hh, ww)

        # audio -> video: audio segment f sees the W*S video tokens of its window
        kv_v = qkv_v.view(b, nv, 3, nh, d)[:, :, 1:]
        if per_sample:
            idx_v = _sample_window_index(nf, s_tok, nv, self.window, s, video.device)
            kv_all = _gather(kv_v, idx_v)  # [B, F, W*S, 2, nh, d]
        else:
            kv_all = _windows(kv_v, nf, s_tok, self.window, s)
        kv, vv = frames(kv_all[:, :, :, 0]), frames(kv_all[:, :, :, 1])
        qa = qkv_a[:, :, 0]  # [B, L, nh, d]
        out_a = sdpa(frames(qa[:, : nf * p].reshape(b, nf, p, nh, d)), kv, vv, upcast=False)
        out_a = out_a.view(b, nf, nh, p, d).permute(0, 2, 4, 1, 3).reshape(b, c, nf * p)
        if length > nf * p:  # the last segment absorbs the remainder
            last = (kv[nf - 1::nf], vv[nf - 1::nf])  # each sample's last frame window
            rest = sdpa(qa[:, nf * p:].transpose(1, 2), *last, upcast=False)  # [B, nh, r, d]
            out_a = torch.cat([out_a, rest.transpose(-1, -2).reshape(b, c, -1)], dim=2)

        return video + self.video_proj_out(out_v), audio + self.audio_proj_out(out_a)


AttnFn = Callable[[Tensor], Tensor]

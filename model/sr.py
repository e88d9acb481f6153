"""The image super-resolution U-Net (guided-diffusion 64->256 upsampler layout, section 4).

``forward(x [N, 3, H, W], timesteps [N], low_res [N, 3, h, w]) -> [N, 6, H, W]``: channels 0-2
are eps, 3-5 the learned-variance interpolation value. Key names match ``checkpoint-layout-sr.tsv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.attention import LegacyAttention
from model.config import SRConfig
from model.nn import TimeEmbed, group_norm_act, group_norm_fp32

__all__ = ["SRResBlock", "SRSequential", "SRUNet"]


class _GN(nn.GroupNorm):
    """Plain-key GroupNorm(32) evaluated in float32."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        return group_norm_fp32(x, self)


class SRResBlock(nn.Module):
    """Guided-diffusion residual block: resampling sits between SiLU and the first conv."""

    def __init__(self, cfg: SRConfig, cin: int, cout: int, updown: str = "") -> None:
        super().__init__()
        self.updown = updown
        self.scale_shift = cfg.use_scale_shift_norm
        self.in_layers = nn.Sequential(_GN(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(cfg.time_embed_dim, 2 * cout if self.scale_shift else cout)
        )
        self.out_layers = nn.Sequential(
            _GN(cout), nn.SiLU(), nn.Dropout(cfg.dropout), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def _resample(self, x: Tensor) -> Tensor:
        if self.updown == "down":
            return F.avg_pool2d(x, 2)
        if self.updown == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x [N, Ci, H, W]``, ``emb [N, E]`` -> ``[N, Co, H', W']``."""
        norm, _, conv = self.in_layers
        h = conv(self._resample(group_norm_act(x, norm, silu=True)))
        x = self._resample(x)
        e = self.emb_layers(emb).to(h.dtype)
        onorm, _, drop, oconv = self.out_layers
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = group_norm_act(h, onorm, scale, shift, silu=True)
        else:
            h = group_norm_act(h + e[:, :, None, None], onorm, silu=True)
        return self.skip_connection(x) + oconv(drop(h))


class SRSequential(nn.Sequential):
    """A U-Net block: residual blocks get the embedding, other layers only the activation."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, SRResBlock) else layer(x)
        return x


class SRUNet(nn.Module):
    """Super-resolution U-Net. Build with :func:`model.build_sr`."""

    def __init__(self, cfg: SRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.working_dtype = torch.float32
        m, mult, r = cfg.model_channels, cfg.channel_mult, cfg.num_res_blocks
        heads_up = cfg.num_heads_upsample if cfg.num_heads_upsample != -1 else cfg.num_heads

        def attn(c: int, nh: int) -> LegacyAttention:
            if cfg.num_head_channels != -1:
                nh = c // cfg.num_head_channels
            return LegacyAttention(c, nh)

        self.time_embed = TimeEmbed(m, cfg.time_embed_dim)
        ch = mult[0] * m
        self.input_blocks = nn.ModuleList(
            [SRSequential(nn.Conv2d(2 * cfg.in_channels, ch, 3, padding=1))]
        )
        stack, ds = [ch], 1
        for level, k in enumerate(mult):
            for _ in range(r):
                layers: list[nn.Module] = [SRResBlock(cfg, ch, k * m)]
                ch = k * m
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch, cfg.num_heads))
                self.input_blocks.append(SRSequential(*layers))
                stack.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(SRSequential(SRResBlock(cfg, ch, ch, "down")))
                stack.append(ch)
                ds *= 2
        self.middle_block = SRSequential(
            SRResBlock(cfg, ch, ch), attn(ch, cfg.num_heads), SRResBlock(cfg, ch, ch)
        )
        self.output_blocks = nn.ModuleList()
        for level, k in list(enumerate(mult))[::-1]:
            for i in range(r + 1):
                layers = [SRResBlock(cfg, ch + stack.pop(), k * m)]
                ch = k * m
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch, heads_up))
                if level and i == r:
                    layers.append(SRResBlock(cfg, ch, ch, "up"))
                    ds //= 2
                self.output_blocks.append(SRSequential(*layers))
        self.out = nn.Sequential(_GN(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))

    def check_inputs(self, x: Tensor, timesteps: Tensor, low_res: Tensor) -> Tensor:
        """Validate shapes before any compute; returns timesteps as ``[N]``."""
        c, down = self.cfg.in_channels, self.cfg.total_downsample
        size = self.cfg.large_size
        if x.dim() != 4 or x.shape[1] != c or x.shape[2] % down or x.shape[3] % down:
            raise ValueError(f"x must be [N, {c}, H, W] with H, W divisible by {down} (official "
                             f"[N, {c}, {size}, {size}]); got {list(x.shape)}")
        n = x.shape[0]
        if low_res.dim() != 4 or low_res.shape[:2] != (n, c):
            small = self.cfg.small_size
            raise ValueError(f"low_res must be [{n}, {c}, h, w] (official [{n}, {c}, {small}, "
                             f"{small}]); got {list(low_res.shape)}")
        t = torch.as_tensor(timesteps, device=x.device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"timesteps must be [{n}] (one per frame); got {list(t.shape)}")
        return t

    def forward(self, x: Tensor, timesteps: Tensor, low_res: Tensor) -> Tensor:
        """``x [N, 3, H, W]`` noisy frame, ``low_res [N, 3, h, w]`` -> ``[N, 6, H, W]``."""
        t = self.check_inputs(x, timesteps, low_res)
        up = F.interpolate(low_res.to(x.dtype), size=x.shape[-2:], mode="bilinear",
                           align_corners=False)
        emb = self.time_embed(t)
        h = torch.cat([x, up], dim=1).to(self.working_dtype)
        if self.out[2].weight.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)
        saved = []
        for block in self.input_blocks:
            h = block(h, emb)
            saved.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, saved.pop()], dim=1), emb)
        return self.out(h.to(x.dtype)).contiguous()

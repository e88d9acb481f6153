"""The coupled audio-video U-Net of MM-Diffusion (ARCHITECTURE.md section 3).

``video [B, F, C, H, W]`` and ``audio [B, C, L]`` in, eps predictions of the same shapes out.
Key names match the official checkpoints (``checkpoint-layout-base.tsv``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.attention import CrossAttention, SelfAttention, Shifts, ShiftSource, shift_table
from model.config import UNetConfig
from model.nn import AudioConv, Norm, TimeEmbed, VideoConv2p1, VideoConv3d, group_norm_act

__all__ = ["AVResBlock", "AVSequential", "AVUNet", "InitialBlock"]


def _video_conv(cfg: UNetConfig, cin: int, cout: int, k: int) -> nn.Module:
    return VideoConv2p1(cin, cout, k) if cfg.video_type == "2d+1d" else VideoConv3d(cin, cout, k)


class InitialBlock(nn.Module):
    """``input_blocks.0.0``: video conv(3) 3 -> C0 and audio conv(3) 1 -> C0."""

    def __init__(self, cfg: UNetConfig, ch: int) -> None:
        super().__init__()
        self.video_conv = _video_conv(cfg, cfg.video_size[1], ch, 3)
        self.audio_conv = AudioConv(cfg.audio_size[0], ch, 3)

    def forward(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        return self.video_conv(video), self.audio_conv(audio)


def _video_down(x: Tensor) -> Tensor:
    b, f, c, h, w = x.shape
    return F.avg_pool2d(x.reshape(b * f, c, h, w), 2).reshape(b, f, c, h // 2, w // 2)


def _video_up(x: Tensor) -> Tensor:
    """Nearest 2x upsampling of every frame of ``x [B, F, C, H, W]``, as one broadcast copy
    (``F.interpolate`` copied twice here: into and out of its preferred layout)."""
    b, f, c, h, w = x.shape
    y = x[:, :, :, :, None, :, None].expand(b, f, c, h, 2, w, 2)
    return y.reshape(b, f, c, 2 * h, 2 * w)


class AVResBlock(nn.Module):
    """Coupled residual block (3.3): both modalities, one FiLM projection, optional resampling
    (after the in-conv), optional video spatial+temporal and audio self-attention."""

    def __init__(
        self, cfg: UNetConfig, cin: int, cout: int, *, dilation: int, updown: str = "",
        video_attention: bool = False, audio_attention: bool = False,
    ) -> None:
        super().__init__()
        self.updown = updown
        self.scale_shift = cfg.use_scale_shift_norm
        e = cfg.time_embed_dim
        self.video_in_layers = nn.Sequential(Norm(cin), nn.SiLU(), _video_conv(cfg, cin, cout, 3))
        self.audio_in_layers = nn.Sequential(
            Norm(cin), nn.SiLU(), AudioConv(cin, cout, 3, dilation)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(e, 2 * cout if self.scale_shift else cout)
        )
        self.video_out_layers = nn.Sequential(
            Norm(cout), nn.SiLU(), nn.Dropout(cfg.dropout), VideoConv3d(cout, cout, 1)
        )
        self.audio_out_layers = nn.Sequential(
            Norm(cout), nn.SiLU(), nn.Dropout(cfg.dropout), AudioConv(cout, cout, 1)
        )
        if cin != cout:
            self.video_skip_connection: nn.Module = VideoConv3d(cin, cout, 1)
            self.audio_skip_connection: nn.Module = AudioConv(cin, cout, 1)
        else:
            self.video_skip_connection = nn.Identity()
            self.audio_skip_connection = nn.Identity()
        if video_attention:
            self.spatial_attention_block = SelfAttention(cout, cfg.num_heads)
            self.temporal_attention_block = SelfAttention(cout, cfg.num_heads)
        if audio_attention:
            self.audio_attention_block = SelfAttention(cout, cfg.num_heads)
        self.video_attention = video_attention
        self.audio_attention = audio_attention

    def forward(self, video: Tensor, audio: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        vin, ain = self.video_in_layers, self.audio_in_layers
        hv = vin[2](group_norm_act(video, vin[0].GroupNorm, silu=True))
        ha = ain[2](group_norm_act(audio, ain[0].GroupNorm, silu=True))
        if self.updown == "down":
            hv, video = _video_down(hv), _video_down(video)
            ha, audio = F.avg_pool1d(ha, 4), F.avg_pool1d(audio, 4)
        elif self.updown == "up":
            hv, video = _video_up(hv), _video_up(video)
            ha, audio = ha.repeat_interleave(4, dim=-1), audio.repeat_interleave(4, dim=-1)
        e = self.emb_layers(emb).to(hv.dtype)  # [B, 2Co] (or [B, Co] without scale-shift)
        ov, oa = self.video_out_layers, self.audio_out_layers
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            hv = group_norm_act(hv, ov[0].GroupNorm, scale, shift, silu=True)
            ha = group_norm_act(ha, oa[0].GroupNorm, scale, shift, silu=True)
        else:
            b = e.shape[0]
            hv = group_norm_act(hv + e.view(b, 1, -1, 1, 1), ov[0].GroupNorm, silu=True)
            ha = group_norm_act(ha + e.view(b, -1, 1), oa[0].GroupNorm, silu=True)
        hv = ov[3](ov[2](hv))
        ha = oa[3](oa[2](ha))
        video = self.video_skip_connection(video) + hv
        audio = self.audio_skip_connection(audio) + ha
        if self.video_attention:
            video = self._video_attention(video)
        if self.audio_attention:
            audio = self.audio_attention_block(audio)
        return video, audio

    def _video_attention(self, x: Tensor) -> Tensor:
        b, f, c, h, w = x.shape
        x = self.spatial_attention_block(x.reshape(b * f, c, h * w))  # per-frame tokens
        x = x.reshape(b, f, c, h * w).permute(0, 3, 2, 1).reshape(b * h * w, c, f)
        x = self.temporal_attention_block(x)  # per-pixel tokens over frames
        return x.reshape(b, h * w, c, f).permute(0, 3, 2, 1).reshape(b, f, c, h, w)


class AVSequential(nn.Sequential):
    """A U-Net block: layers run in order, each given what it needs."""

    def forward(  # type: ignore[override]
        self, video: Tensor, audio: Tensor, emb: Tensor, shifts: Shifts
    ) -> tuple[Tensor, Tensor]:
        for layer in self:
            if isinstance(layer, AVResBlock):
                video, audio = layer(video, audio, emb)
            elif isinstance(layer, CrossAttention):
                video, audio = layer(video, audio, shifts)
            else:
                video, audio = layer(video, audio)
        return video, audio


class AVUNet(nn.Module):
    """Coupled audio-video U-Net. Build with :func:`model.build_unet`."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.working_dtype = torch.float32
        m, mult, r = cfg.model_channels, cfg.channel_mult, cfg.num_res_blocks
        nframes = cfg.video_size[0]

        def heads(c: int) -> int:
            return c // cfg.num_head_channels if cfg.num_head_channels != -1 else cfg.num_heads

        def cross(c: int, ds: int, name: str) -> CrossAttention:
            win = cfg.cross_attention_windows[cfg.cross_attention_resolutions.index(ds)]
            return CrossAttention(c, heads(c), win, cfg.cross_attention_shift, name)

        self.time_embed = TimeEmbed(m, cfg.time_embed_dim)
        ch = mult[0] * m
        self.input_blocks = nn.ModuleList([AVSequential(InitialBlock(cfg, ch))])
        stack, ds, n = [ch], 1, 1
        for level, k in enumerate(mult):
            for _ in range(r):
                name = f"input_blocks.{len(self.input_blocks)}"
                layers: list[nn.Module] = [AVResBlock(
                    cfg, ch, k * m, dilation=2 ** (n % 10),
                    video_attention=ds in cfg.video_attention_resolutions,
                    audio_attention=ds in cfg.audio_attention_resolutions,
                )]
                n += 1
                ch = k * m
                if ds in cfg.cross_attention_resolutions:
                    layers.append(cross(ch, ds, f"{name}.1"))
                self.input_blocks.append(AVSequential(*layers))
                stack.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(
                    AVSequential(AVResBlock(cfg, ch, ch, dilation=2 ** (n % 10), updown="down"))
                )
                n += 1
                stack.append(ch)
                ds *= 2
        mid_dil = 2 ** (n % 10)
        middle: list[nn.Module] = [AVResBlock(cfg, ch, ch, dilation=mid_dil, video_attention=True,
                                              audio_attention=True)]
        if tuple(cfg.cross_attention_windows) == (1, 4, 8):
            middle.append(CrossAttention(ch, heads(ch), nframes, False, "middle_blocks.1"))
        middle.append(AVResBlock(cfg, ch, ch, dilation=mid_dil, video_attention=True,
                                 audio_attention=True))
        self.middle_blocks = AVSequential(*middle)
        n -= 1
        self.output_blocks = nn.ModuleList()
        for level, k in list(enumerate(mult))[::-1]:
            for i in range(r + 1):
                name = f"output_blocks.{len(self.output_blocks)}"
                layers = [AVResBlock(
                    cfg, ch + stack.pop(), k * m, dilation=2 ** (n % 10),
                    video_attention=ds in cfg.video_attention_resolutions,
                    audio_attention=ds in cfg.audio_attention_resolutions,
                )]
                n -= 1
                ch = k * m
                if ds in cfg.cross_attention_resolutions:
                    layers.append(cross(ch, ds, f"{name}.1"))
                if level and i == r:
                    layers.append(AVResBlock(cfg, ch, ch, dilation=2 ** (n % 10), updown="up"))
                    ds //= 2
                self.output_blocks.append(AVSequential(*layers))
        self.audio_out = nn.Sequential(
            Norm(ch), nn.SiLU(), AudioConv(ch, cfg.audio_out_channels, 3)
        )
        self.video_out = nn.Sequential(
            Norm(ch), nn.SiLU(), VideoConv3d(ch, cfg.video_out_channels, 3)
        )
        self.last_window_shifts: list[int | list[int]] = []
        self._cross = [mod for mod in self.modules() if isinstance(mod, CrossAttention)]
        for i, mod in enumerate(self._cross):  # modules() order is forward order
            mod.call_index = i
        # True once model.speed compiled ``_network``: shifts then go in as an int64 table on
        # the input's device (data for the graph) instead of Python ints (one graph per value).
        self.shifts_as_table = False

    @property
    def num_cross_calls(self) -> int:
        """Cross-attention calls per forward = the length ``window_shifts`` must have."""
        return len(self._cross)

    def check_inputs(self, video: Tensor, audio: Tensor, timesteps: Tensor) -> Tensor:
        """Validate shapes (cheap, before any compute); returns timesteps as ``[B]``."""
        cfg = self.cfg
        nf, c, h, w = cfg.video_size
        ca, length = cfg.audio_size
        if video.dim() != 5 or video.shape[1] != nf or video.shape[2] != c:
            raise ValueError(f"video must be [B, {nf}, {c}, H, W] (frames before channels); "
                             f"got {list(video.shape)}")
        down = cfg.total_downsample
        if video.shape[3] % down or video.shape[4] % down:
            raise ValueError(f"video H and W must be divisible by {down} (e.g. [B, {nf}, {c}, "
                             f"{h}, {w}]); got {list(video.shape)}")
        b = video.shape[0]
        if audio.dim() != 3 or tuple(audio.shape) != (b, ca, length):
            raise ValueError(f"audio must be [{b}, {ca}, {length}] to match the video batch and "
                             f"the config; got {list(audio.shape)}")
        t = torch.as_tensor(timesteps, device=video.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"timesteps must be [{b}] (one per sample); got {list(t.shape)}")
        return t

    def forward(
        self, video: Tensor, audio: Tensor, timesteps: Tensor, *,
        window_shifts: Sequence[int] | None = None, generator: torch.Generator | None = None,
        shift_groups: Sequence[tuple[torch.Generator, int]] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """eps predictions for ``video [B, F, C, H, W]``, ``audio [B, C, L]``, ``timesteps [B]``.

        ``window_shifts``: one int per cross-attention call in forward order (unshifted blocks
        as 0) overriding the random shifts; otherwise shifts are drawn from ``generator``. The
        shifts used are left in ``self.last_window_shifts``. Outputs are in the working dtype.
        ``shift_groups``: a batch of independent jobs, one ``(generator, samples)`` pair per job
        in batch order (samples summing to ``B``): each job draws its own shift per call, as it
        would alone (see :class:`~model.attention.ShiftSource`).
        """
        t = self.check_inputs(video, audio, timesteps)
        if window_shifts is not None and len(window_shifts) != self.num_cross_calls:
            raise ValueError(
                f"window_shifts has {len(window_shifts)} values; this model makes "
                f"{self.num_cross_calls} cross-attention calls per forward (one value per call "
                "in forward order, unshifted blocks included as 0)"
            )
        if shift_groups is not None and sum(n for _, n in shift_groups) != video.shape[0]:
            raise ValueError(f"shift_groups cover {sum(n for _, n in shift_groups)} samples; "
                             f"the batch has {video.shape[0]} (one (generator, samples) per job)")
        # every shift of this forward is drawn here, before the (possibly compiled) network, in
        # forward order: the same draws, values and validation as drawing them call by call
        source = ShiftSource(window_shifts, generator, shift_groups)
        nf = video.shape[1]
        values = source.draw_all([(m.name, nf - m.window, m.shift) for m in self._cross])
        self.last_window_shifts = source.used
        shifts: Shifts = values
        if self.shifts_as_table:
            shifts = shift_table(values, video.shape[0], video.device)
        return self._network(video, audio, t, shifts)

    def _network(self, video: Tensor, audio: Tensor, t: Tensor,
                 shifts: Shifts) -> tuple[Tensor, Tensor]:
        """The network proper (what ``model.speed`` compiles): ``shifts`` are the per-call values
        (eager: ints, the strided-window fast path) or an ``int64 [calls, B]`` table
        (compiled: one graph for every shift value)."""
        emb = self.time_embed(t)
        v, a = video.to(self.working_dtype), audio.to(self.working_dtype)
        saved: list[tuple[Tensor, Tensor]] = []
        for block in self.input_blocks:
            v, a = block(v, a, emb, shifts)
            saved.append((v, a))
        v, a = self.middle_blocks(v, a, emb, shifts)
        for block in self.output_blocks:
            sv, sa = saved.pop()
            v, a = block(torch.cat([v, sv], dim=2), torch.cat([a, sa], dim=1), emb, shifts)
        return self.video_out(v), self.audio_out(a)

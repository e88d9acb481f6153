"""Frozen architecture configs for the coupled audio-video U-Net and the SR U-Net.

Presets reproduce the official MM-Diffusion checkpoints (see ARCHITECTURE.md sections 1.1/1.2);
``from_official_flags`` accepts the flag names and values of the official shell scripts, so a
user can carry them over unchanged (comma-separated strings or lists both work).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["SRConfig", "UNetConfig", "default_channel_mult"]

# Flags of the official scripts that do not change the network (diffusion / runtime settings).
_IGNORED_FLAGS = frozenset(
    {
        "diffusion_steps", "noise_schedule", "timestep_respacing", "use_kl", "predict_xstart",
        "rescale_timesteps", "rescale_learned_sigmas", "use_checkpoint", "sr_use_checkpoint",
        "use_fp16", "sr_use_fp16", "num_heads_upsample", "sr_num_heads_upsample",
        "class_cond", "sr_class_cond", "conv_resample", "dims", "use_new_attention_order",
        "sr_diffusion_steps", "sr_noise_schedule", "sr_timestep_respacing", "sr_use_kl",
        "sr_predict_xstart", "sr_rescale_timesteps", "sr_rescale_learned_sigmas",
    }
)

_SR_ONLY_FLAGS = frozenset({"large_size", "small_size"})

# The demo world's tones peak at 0.5 (RMS 0.241 over 4096 clips, model/demo/world.py); the demo
# model sees them x2: peak 1, RMS 0.48. Not unit variance (x4.15): DDIM, DDPM and the official
# conditional loop clip x0 to [-1, 1] in the network's domain, which would cut louder audio.
DEMO_AUDIO_SCALE = 2.0

# The demo model's conditional guidance scale (fast conditional preset DDIM 10 x 2, base only,
# shipped weights, the pipeline's noise). Audio-to-video sync / colour-pitch, 64 jobs on seeds
# 1000.. and on 5000..: scale 300 -> 0.772 / 0.833 and 0.804 / 0.871; 450 -> 0.841 / 0.860 and
# 0.838 / 0.876; 600 -> 0.860 / 0.856 and 0.883 / 0.892; 800 -> 0.893 / 0.856 and 0.892 / 0.882;
# 1100 -> 0.911 / 0.867 and 0.945 / 0.879; 1500 -> 0.915 / 0.855 and 0.941 / 0.876; 2000 ->
# 0.908 / 0.838 and 0.956 / 0.876 (pixels lit 0.124 at 300 .. 0.138 at 2000; real clips 0.105).
# Under the earlier preset DDIM 20 the best was 450: 0.814 / 0.766 and 0.744 / 0.701.
# Video-to-audio barely moves with the scale: 0.924 / 0.992 and 0.929 / 1.0 at 800.
DEMO_GUIDANCE_SCALE = 1100.0


def default_channel_mult(size: int) -> tuple[int, ...]:
    """Channel multipliers the official factories derive from the frame size."""
    table = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if size not in table:
        raise ValueError(
            f"no default channel_mult for size {size}; expected one of {sorted(table)} "
            "or pass channel_mult explicitly (e.g. '1,2,3,4')"
        )
    return table[size]


def _ints(value: Any, name: str) -> tuple[int, ...]:
    """Parse '2,4,8' / [2, 4, 8] / 8 into a tuple of ints; '-1' or '' means empty."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            out = tuple(int(p) for p in parts)
        except ValueError as exc:
            raise ValueError(f"flag {name}={value!r}: expected comma-separated integers") from exc
    elif isinstance(value, int):
        out = (value,)
    else:
        out = tuple(int(v) for v in value)
    return tuple(v for v in out if v != -1)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
        return value.lower() in {"true", "1"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"flag {name}={value!r}: expected True or False")


@dataclass(frozen=True)
class UNetConfig:
    """Coupled audio-video U-Net. Video is ``[F, C, H, W]``, audio ``[C, L]`` (no batch)."""

    video_size: tuple[int, int, int, int] = (16, 3, 64, 64)
    audio_size: tuple[int, int] = (1, 25600)
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    cross_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    cross_attention_windows: tuple[int, ...] = (1, 4, 8)
    cross_attention_shift: bool = True
    video_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    audio_attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    num_head_channels: int = 64
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    learn_sigma: bool = False
    dropout: float = 0.0
    video_type: Literal["2d+1d", "3d"] = "2d+1d"
    audio_type: Literal["1d", "linear"] = "1d"
    # Media geometry (frames and frame size are ``video_size``): frame rate and audio sample
    # rate, so ``video_size[0] / fps == audio_size[1] / sample_rate`` (the clip's duration).
    fps: int = 10
    sample_rate: int = 16000
    # What the network predicts: "eps" (noise; every official model) or "v"
    # (``v = alpha*eps - sigma*x0``; the denoiser wrapper converts it to eps for the samplers).
    prediction: Literal["eps", "v"] = "eps"
    # The network's audio is ``audio_scale`` x the waveform in [-1, 1]; the pipeline multiplies
    # conditions by it and divides samples by it.
    audio_scale: float = 1.0
    # Gradient-guidance scale of the conditional modes when a request names none. The guidance
    # loss is a per-element MEAN, so the right scale grows with the condition's element count:
    # 3.0 is the official scripts' classifier_scale (their fp16 loss scale made it act as
    # 3 * 2**20); the demo model measured its own (DEMO_GUIDANCE_SCALE). core/sampling.py's
    # GUIDANCE_SCALES mirrors these for the gateway (tests/model/test_guidance_defaults.py).
    guidance_scale: float = 3.0

    def __post_init__(self) -> None:
        if len(self.video_size) != 4 or len(self.audio_size) != 2:
            raise ValueError(
                f"video_size must be (F, C, H, W) and audio_size (C, L); got "
                f"{self.video_size} and {self.audio_size}"
            )
        if len(self.cross_attention_resolutions) != len(self.cross_attention_windows):
            raise ValueError(
                "cross_attention_windows needs one window per cross-attention resolution; got "
                f"{self.cross_attention_windows} for {self.cross_attention_resolutions}"
            )
        if not self.resblock_updown:
            raise ValueError("the coupled U-Net needs resblock_updown=True (official value)")
        if self.video_type not in ("2d+1d", "3d") or self.audio_type not in ("1d", "linear"):
            raise ValueError(
                f"video_type must be '2d+1d' or '3d' and audio_type '1d' or 'linear'; got "
                f"{self.video_type!r}, {self.audio_type!r}"
            )
        down = 2 ** (len(self.channel_mult) - 1)
        if self.audio_size[1] % (down * down) or self.audio_size[1] // (down * down) < \
                self.video_size[0]:
            raise ValueError(
                f"audio length {self.audio_size[1]} must be a multiple of {down * down} (audio is "
                f"downsampled x4 per level) with at least one sample per frame at the deepest level"
            )
        if self.model_channels % 32:
            raise ValueError(f"model_channels must be a multiple of 32 (GroupNorm(32)); got "
                             f"{self.model_channels}")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v'; got {self.prediction!r}")
        if self.fps < 1 or self.sample_rate < 1 or not self.audio_scale > 0:
            raise ValueError(f"fps, sample_rate and audio_scale must be positive; got "
                             f"{self.fps}, {self.sample_rate}, {self.audio_scale}")

    @property
    def seconds(self) -> float:
        """Duration of one window in seconds (``frames / fps``)."""
        return self.video_size[0] / self.fps

    @property
    def time_embed_dim(self) -> int:
        """Width E of the timestep embedding (= model_channels in the base model)."""
        return self.model_channels

    @property
    def video_out_channels(self) -> int:
        return self.video_size[1] * (2 if self.learn_sigma else 1)

    @property
    def audio_out_channels(self) -> int:
        return self.audio_size[0] * (2 if self.learn_sigma else 1)

    @property
    def total_downsample(self) -> int:
        """Video H/W downsampling factor at the deepest level (audio: its square)."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str) -> UNetConfig:
        """``"landscape"``, ``"aist++"`` (official, identical nets), ``"tiny"`` (CPU tests, random
        weights) or ``"demo"`` (the shipped model of the demo world, ``model/demo``: 8 frames of
        16 x 16 at 8 fps, audio at 2048 Hz, v-prediction)."""
        key = name.lower()
        if key == "demo":
            return cls(
                # cross_attention_shift=False: frame f attends to its own audio segment (window
                # 1 at ds 2). With random shifts (the official setting) the alignment is random
                # per forward and sync was not learned: 3613 steps gave joint sync 0.30, the
                # unshifted model 0.93 after 843 steps (same world, trainer and seed).
                video_size=(8, 3, 16, 16), audio_size=(1, 2048), model_channels=32,
                channel_mult=(1, 1, 1, 1), num_res_blocks=1, cross_attention_shift=False,
                video_attention_resolutions=(8,), audio_attention_resolutions=(),
                num_heads=2, num_head_channels=8, fps=8, sample_rate=2048, prediction="v",
                audio_scale=DEMO_AUDIO_SCALE, guidance_scale=DEMO_GUIDANCE_SCALE,
            )
        if key in ("landscape", "aist++", "aist", "official"):
            return cls()
        if key == "tiny":
            return cls(
                video_size=(8, 3, 16, 16), audio_size=(1, 2048), model_channels=32,
                channel_mult=(1, 1, 1, 1), num_res_blocks=1, cross_attention_shift=True,
                video_attention_resolutions=(2, 8), audio_attention_resolutions=(4,),
                num_heads=2, num_head_channels=8,
            )
        raise ValueError(f"unknown U-Net preset {name!r}; expected 'landscape', 'aist++', 'tiny' "
                         "or 'demo'")

    @classmethod
    def from_official_flags(cls, **flags: Any) -> UNetConfig:
        """Build from the official scripts' flags (``num_channels``, ``'2,4,8'`` strings...)."""
        known: dict[str, Any] = {}
        unknown = []
        for name, value in flags.items():
            if name in _IGNORED_FLAGS or name.startswith("sr_") or name in _SR_ONLY_FLAGS:
                continue  # a merged dict of the sampling script's flags also carries SR flags
            if name in ("video_size", "audio_size"):
                known[name] = _ints(value, name)
            elif name == "num_channels":
                known["model_channels"] = int(value)
            elif name == "channel_mult":
                if value not in ("", None):
                    known["channel_mult"] = _ints(value, name)
            elif name in ("cross_attention_resolutions", "cross_attention_windows",
                          "video_attention_resolutions", "audio_attention_resolutions"):
                known[name] = _ints(value, name)
            elif name in ("cross_attention_shift", "use_scale_shift_norm", "resblock_updown",
                          "learn_sigma"):
                known[name] = _bool(value, name)
            elif name in ("num_res_blocks", "num_heads", "num_head_channels"):
                known[name] = int(value)
            elif name == "dropout":
                known[name] = float(value)
            elif name in ("video_type", "audio_type"):
                known[name] = str(value)
            else:
                unknown.append(name)
        if unknown:
            raise ValueError(f"unknown U-Net flags {sorted(unknown)}; expected official flag names "
                             "such as num_channels, channel_mult, cross_attention_windows")
        if _bool(flags.get("class_cond", False), "class_cond"):
            raise ValueError("class_cond=True is not supported (no official model uses it)")
        if "channel_mult" not in known:
            size = known.get("video_size", cls.video_size)[2]
            known["channel_mult"] = default_channel_mult(size)
        return cls(**known)

    def with_(self, **changes: Any) -> UNetConfig:
        """Copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class SRConfig:
    """Guided-diffusion style image super-resolution U-Net (per frame)."""

    large_size: int = 256
    small_size: int = 64
    in_channels: int = 3
    model_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 16, 32)
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    learn_sigma: bool = True
    dropout: float = 0.0
    prediction: Literal["eps", "v"] = "eps"  # as UNetConfig.prediction

    def __post_init__(self) -> None:
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v'; got {self.prediction!r}")
        if not self.resblock_updown:
            raise ValueError("only resblock_updown=True is implemented (official value)")
        if self.model_channels % 32:
            raise ValueError(f"model_channels must be a multiple of 32; got {self.model_channels}")

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def total_downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str) -> SRConfig:
        """``"official"`` (alias ``"landscape"``, ``"aist++"``): 64->256; ``"tiny"``: 8->32;
        ``"demo_sr"`` (alias ``"demo"``): 16->32, the shipped demo SR (v-prediction)."""
        key = name.lower()
        if key in ("demo_sr", "demo"):
            return cls(large_size=32, small_size=16, model_channels=32, channel_mult=(1, 1, 2),
                       num_res_blocks=1, attention_resolutions=(), num_heads=2,
                       learn_sigma=False, prediction="v")
        if key in ("official", "landscape", "aist++", "aist"):
            return cls()
        if key == "tiny":
            return cls(large_size=32, small_size=8, model_channels=32, channel_mult=(1, 1, 2),
                       num_res_blocks=1, attention_resolutions=(2, 4), num_heads=2)
        raise ValueError(f"unknown SR preset {name!r}; expected 'official', 'landscape', "
                         "'aist++', 'tiny' or 'demo_sr'")

    @classmethod
    def from_official_flags(cls, **flags: Any) -> SRConfig:
        """Build from the SR flags (``sr_num_channels``, ``sr_attention_resolutions``...).

        The ``sr_`` prefix is optional; when any ``sr_`` flag is present (a merged dict of the
        sampling script's flags) the unprefixed model flags belong to the base model and are
        ignored. ``sr_attention_resolutions`` are used directly as downsample factors, as in the
        official SR factory.
        """
        known: dict[str, Any] = {}
        unknown = []
        merged = any(k.startswith("sr_") for k in flags)
        for raw, value in flags.items():
            if raw in _IGNORED_FLAGS:
                continue
            if merged and not raw.startswith("sr_") and raw not in _SR_ONLY_FLAGS:
                continue
            name = raw[3:] if raw.startswith("sr_") else raw
            if name in ("large_size", "small_size", "num_res_blocks", "num_heads",
                        "num_head_channels", "in_channels"):
                known[name] = int(value)
            elif name == "num_channels":
                known["model_channels"] = int(value)
            elif name == "channel_mult":
                if value not in ("", None):
                    known["channel_mult"] = _ints(value, raw)
            elif name == "attention_resolutions":
                known["attention_resolutions"] = _ints(value, raw)
            elif name in ("use_scale_shift_norm", "resblock_updown", "learn_sigma"):
                known[name] = _bool(value, raw)
            elif name == "dropout":
                known[name] = float(value)
            else:
                unknown.append(raw)
        if unknown:
            raise ValueError(f"unknown SR flags {sorted(unknown)}; expected official flag names "
                             "such as large_size, small_size, sr_num_channels")
        if "channel_mult" not in known:
            known["channel_mult"] = default_channel_mult(known.get("large_size", cls.large_size))
        return cls(**known)

    def with_(self, **changes: Any) -> SRConfig:
        return replace(self, **changes)


def config_summary(cfg: UNetConfig | SRConfig) -> Mapping[str, Any]:
    """Plain dict view (for logs and model cards)."""
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}

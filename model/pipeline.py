"""One generation: base audio-video sampling -> per-frame super-resolution -> uint8 frames + audio.

>>> models = load_models("tiny", preset="tiny")            # model/registry.py
>>> result = generate(GenerationRequest(seed=1), models)
>>> result.frames.shape, result.audio.shape                 # (1, 8, 64, 64, 3), (1, 2048)

Randomness (SAMPLING.md §6-§8; everything derives from ``request.seed``, all drawn on the CPU and
then moved to the device, so one seed gives the same sample on any device up to float rounding):

* x_T: one CPU ``torch.Generator`` seeded with ``seed`` draws the video noise ``[N, F, C, H, W]``,
  then the audio noise ``[N, C, L]``, then (SR on) the SR noise: one ``[3, H', W']`` image per
  clip, repeated over its frames (official behaviour);
* the U-Net's random cross-attention window shifts: a second CPU generator seeded with
  ``derive_seed(seed, "window-shifts")``;
* sampler noise (DDPM / DDIM eta > 0 / conditional loops): ``derive_seed(seed, "base-sampler")``
  and ``derive_seed(seed, "sr-sampler")`` generators, drawn on the CPU.

The base sample stays float and unclamped until the end; SR sees it as ``low_res``, frames
flattened ``(n f)``, processed ``sr_chunk_frames`` frames at a time (bounded memory). Output:
``uint8 = trunc(clamp((x + 1) * 127.5, 0, 255))``, audio float32 clipped to ``[-1, 1]``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from model.config import SRConfig, UNetConfig
from model.samplers import (
    SamplerSpec,
    SamplingCancelled,
    count_nfe,
    sample_conditional,
    sample_joint,
    sample_sr,
    shared_clip_noise,
)
from model.state import AV

Mode = Literal["joint", "video-to-audio", "audio-to-video"]
MODES: tuple[str, ...] = ("joint", "video-to-audio", "audio-to-video")
Progress = Callable[[str, int, int], None]
FPS = 10  # frame rate of every released model (the video_size frames span 1.6 s officially)
SAMPLE_RATE = 16000  # audio sample rate of every released model


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What to generate. Sizes come from the loaded models' configs (see :func:`validate`).

    ``condition_video``: ``uint8 [F, H, W, 3]`` at the model's frame size (video-to-audio).
    ``condition_audio``: ``float32 [T]`` at 16 kHz in ``[-1, 1]``, ``T`` = the model's audio
    length (audio-to-video). Official settings are the defaults (base DPM-Solver 20 steps order 3,
    SR DDIM 25 steps, gradient guidance with scale 3.0).
    """

    mode: Mode = "joint"
    seed: int = 0
    num_samples: int = 1
    base_sampler: SamplerSpec = field(default_factory=SamplerSpec)
    super_resolution: bool = True
    sr_sampler: SamplerSpec = field(default_factory=lambda: SamplerSpec(name="ddim", steps=25))
    sr_chunk_frames: int = 16
    guidance: Literal["replacement", "gradient"] = "gradient"
    guidance_scale: float = 3.0
    condition_video: np.ndarray | None = None
    condition_audio: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {self.num_samples}")
        if self.sr_chunk_frames < 1:
            raise ValueError(f"sr_chunk_frames must be >= 1; got {self.sr_chunk_frames}")
        if self.guidance not in ("replacement", "gradient"):
            raise ValueError(f"guidance must be 'replacement' or 'gradient'; got {self.guidance!r}")
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0; got {self.guidance_scale}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63); got {self.seed}")


@dataclass
class LoadedModels:
    """Networks built once per worker by :func:`model.registry.load_models` (eval mode, on device)."""

    name: str
    unet: nn.Module
    unet_cfg: UNetConfig
    sr: nn.Module | None
    sr_cfg: SRConfig | None
    device: torch.device
    precision: str
    random_weights: bool
    # SR frames per network call chosen by the worker (MMD_SR_MAX_BATCH_FRAMES); None = the
    # request's sr_chunk_frames. Outputs do not depend on it beyond float rounding.
    sr_batch_frames: int | None = None


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """``frames uint8 [N, F, H, W, 3]`` (base size, or SR size when SR ran), ``audio float32
    [N, T]`` at 16 kHz. ``nfe``: ``base`` (U-Net forward passes), ``base_backward`` (backward
    passes, gradient-guided conditional only), ``sr`` (SR sampler steps per frame) and
    ``sr_calls`` (batched SR network calls over all chunks). ``stage_seconds``: ``base``, ``sr``."""

    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int
    nfe: dict[str, int]
    stage_seconds: dict[str, float]
    random_weights: bool
    batch_size: int = 1  # jobs that ran together in this batch (generate_batch)
    # Peak CUDA memory allocated per stage (``base``, ``sr``) in bytes; empty on CPU.
    peak_memory_bytes: dict[str, int] = field(default_factory=dict)


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` derived from the request seed (stable across versions)."""
    digest = hashlib.sha256(f"mmd:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _cpu_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _cpu_noise(generator: torch.Generator) -> Callable[[int, object], object]:
    """A sampler ``noise_fn``: standard normal drawn on the CPU, moved to the state's device."""

    def draw(step: int, like: object) -> object:
        def one(x: Tensor) -> Tensor:
            return torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)

        return like.map(one) if isinstance(like, AV) else one(like)  # type: ignore[attr-defined]

    return draw


# --------------------------------------------------------------------------------------------
# validation


def validate(request: GenerationRequest, models: LoadedModels) -> None:
    """Raise ValueError unless ``request`` fits ``models`` (condition shapes, SR availability)."""
    frames, channels, height, width = models.unet_cfg.video_size
    audio_channels, length = models.unet_cfg.audio_size
    if channels != 3 or audio_channels != 1:
        raise ValueError(
            f"the pipeline needs RGB video and mono audio; the model has {channels} video and "
            f"{audio_channels} audio channels"
        )
    if request.super_resolution and (models.sr is None or models.sr_cfg is None):
        raise ValueError(
            "super_resolution=True but no SR model is loaded; load it (load_models(..., sr=True)) "
            "or set super_resolution=False"
        )
    cv, ca = request.condition_video, request.condition_audio
    if request.mode != "video-to-audio" and cv is not None:
        raise ValueError(f"condition_video is only used by mode='video-to-audio'; got mode={request.mode!r}")
    if request.mode != "audio-to-video" and ca is not None:
        raise ValueError(f"condition_audio is only used by mode='audio-to-video'; got mode={request.mode!r}")
    if request.mode == "video-to-audio":
        expected = (frames, height, width, 3)
        if not isinstance(cv, np.ndarray) or cv.dtype != np.uint8 or cv.shape != expected:
            got = "None" if cv is None else f"{getattr(cv, 'dtype', type(cv).__name__)} {getattr(cv, 'shape', '')}"
            raise ValueError(
                f"mode='video-to-audio' needs condition_video uint8 {list(expected)} "
                f"(F, H, W, RGB at the model size); got {got}"
            )
    if request.mode == "audio-to-video":
        if not isinstance(ca, np.ndarray) or ca.dtype != np.float32 or ca.shape != (length,):
            got = "None" if ca is None else f"{getattr(ca, 'dtype', type(ca).__name__)} {getattr(ca, 'shape', '')}"
            raise ValueError(
                f"mode='audio-to-video' needs condition_audio float32 [{length}] ({length} samples "
                f"at {SAMPLE_RATE} Hz); got {got}"
            )
        if not np.isfinite(ca).all() or np.abs(ca).max() > 1.0:
            raise ValueError("condition_audio must be finite and within [-1, 1]; clip or normalise it")


# --------------------------------------------------------------------------------------------
# generation


def batch_key(request: GenerationRequest) -> tuple[object, ...] | None:
    """Requests with equal keys can run as one batch (:func:`generate_batch`) and each get
    the result they get alone; None = this request only runs alone.

    Excluded: the conditional modes (the gradient-guided objective is a batch MEAN, so each
    sample's gradient depends on the batch; and each needs its own condition), adaptive
    DPM-Solver (its step size follows the MAX error over the batch), and a stochastic SR
    sampler (ddpm, ddim eta > 0: its noise is drawn per frame chunk, and chunks span jobs).
    A stochastic base sampler is fine: each job draws its own noise from its own generator.
    """
    if request.mode != "joint" or request.base_sampler.method == "adaptive" and (
            request.base_sampler.name.startswith("dpm_solver")):
        return None
    sr = request.sr_sampler
    if request.super_resolution and (sr.name == "ddpm" or sr.name == "ddim" and sr.eta > 0):
        return None
    return (request.mode, request.base_sampler, request.super_resolution,
            request.sr_sampler if request.super_resolution else None, request.sr_chunk_frames)


def generate(
    request: GenerationRequest, models: LoadedModels, *, progress: Progress | None = None
) -> GenerationResult:
    """Run one request. ``progress(stage, step, total)`` with stage ``"base"`` then ``"sr"``;
    a ``model.samplers.SamplingCancelled`` raised by it (or by anything inside) propagates."""
    result = generate_batch([request], models, progress_fns=[progress])[0]
    assert result is not None  # a lone canceled job raises
    return result


def generate_batch(
    requests: Sequence[GenerationRequest], models: LoadedModels, *,
    progress_fns: Sequence[Progress | None] | None = None,
) -> list[GenerationResult | None]:
    """Run independent requests with equal :func:`batch_key` as ONE batch through the networks;
    each keeps its own seed (x_T, window shifts, sampler noise from its own generators), so its
    result equals its lone :func:`generate` result up to float rounding of batched kernels.

    ``progress_fns[i]`` reports job ``i``; a ``SamplingCancelled`` it raises drops that job
    (it keeps being computed, its entry in the returned list is None, its progress function
    is not called again); once every job is dropped the run stops with ``SamplingCancelled``.
    """
    if not requests:
        raise ValueError("generate_batch needs at least one request")
    fns = list(progress_fns) if progress_fns is not None else [None] * len(requests)
    if len(fns) != len(requests):
        raise ValueError(f"got {len(fns)} progress_fns for {len(requests)} requests; pass one "
                         "per request (None for no progress)")
    for request in requests:
        validate(request, models)
    if len(requests) > 1:
        keys = {batch_key(r) for r in requests}
        if None in keys or len(keys) > 1:
            raise ValueError("these requests cannot share a batch: they need equal batch_key() "
                             "(joint mode, same samplers and SR settings, no adaptive DPM-Solver,"
                             " no stochastic SR sampler); run them one by one with generate()")
    request = requests[0]
    cfg = models.unet_cfg
    counts = [r.num_samples for r in requests]
    n = sum(counts)
    device = models.device
    mains = [_cpu_generator(r.seed) for r in requests]
    x_T = AV(  # per job: its video noise, then its audio noise (as alone)
        torch.cat([torch.randn((c, *cfg.video_size), generator=g) for c, g in zip(counts, mains)]
                  ).to(device),
        torch.cat([torch.randn((c, *cfg.audio_size), generator=g) for c, g in zip(counts, mains)]
                  ).to(device),
    )
    live = _LiveJobs(fns)
    nfe: dict[str, int] = {}
    seconds: dict[str, float] = {}

    start = _now(device)
    video, audio, nfe["base"], nfe["base_backward"] = _base_stage(
        requests, models, x_T, live.progress)
    seconds["base"] = _now(device) - start

    if request.mode == "video-to-audio":  # keep the original condition frames
        assert request.condition_video is not None
        video = _uint8_to_model(request.condition_video, device).expand(n, -1, -1, -1, -1)
    frames_out: np.ndarray
    if request.super_resolution:
        start = _now(device)
        high, nfe["sr"], nfe["sr_calls"] = _sr_stage(requests, models, video, mains, live.progress)
        seconds["sr"] = _now(device) - start
        frames_out = _to_uint8_frames(high)
    elif request.mode == "video-to-audio":
        frames_out = np.broadcast_to(request.condition_video, (n, *request.condition_video.shape)).copy()
    else:
        frames_out = _to_uint8_frames(video)

    if request.mode == "audio-to-video":  # keep the original condition audio
        assert request.condition_audio is not None
        audio_out = np.broadcast_to(request.condition_audio, (n, request.condition_audio.shape[0])).copy()
    else:
        audio_out = audio[:, 0].float().clamp(-1, 1).cpu().numpy().astype(np.float32)
    results: list[GenerationResult | None] = []
    begin = 0
    for i, count in enumerate(counts):
        part = slice(begin, begin + count)
        begin += count
        results.append(None if i in live.dropped else GenerationResult(
            frames=frames_out[part].copy(), audio=audio_out[part].copy(), fps=FPS,
            sample_rate=SAMPLE_RATE, nfe=dict(nfe), stage_seconds=dict(seconds),
            random_weights=models.random_weights, batch_size=len(requests),
        ))
    return results


class _LiveJobs:
    """Fans one batch's progress out to each job's callback; drops a job whose callback raises
    ``SamplingCancelled``; raises it itself once every job is dropped."""

    def __init__(self, fns: Sequence[Progress | None]) -> None:
        self.fns = list(fns)
        self.dropped: set[int] = set()

    def progress(self, stage: str, step: int, total: int) -> None:
        for i, fn in enumerate(self.fns):
            if fn is None or i in self.dropped:
                continue
            try:
                fn(stage, step, total)
            except SamplingCancelled:
                if len(self.fns) == 1:
                    raise
                self.dropped.add(i)
        if len(self.dropped) == len(self.fns):
            raise SamplingCancelled(f"all {len(self.fns)} jobs of the batch were canceled")


def _group_noise(generators: Sequence[torch.Generator], counts: Sequence[int]
                 ) -> Callable[[int, object], object]:
    """A sampler ``noise_fn`` for a batch: job ``j`` draws its rows ``[counts[j], ...]`` from its
    own generator, video before audio, exactly the draws it makes alone."""
    if len(generators) == 1:
        return _cpu_noise(generators[0])

    def draw(step: int, like: object) -> object:
        def one(x: Tensor) -> Tensor:
            parts = [torch.randn((c, *x.shape[1:]), generator=g) for g, c in zip(generators, counts)]
            return torch.cat(parts).to(device=x.device, dtype=x.dtype)

        return like.map(one) if isinstance(like, AV) else one(like)  # type: ignore[attr-defined]

    return draw


def _now(device: torch.device, peak: dict[str, int] | None = None, stage: str = "",
         reset_peak: bool = False) -> float:
    """Seconds clock (synchronising CUDA); on CUDA also resets or records the peak memory."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if reset_peak:
            torch.cuda.reset_peak_memory_stats(device)
        if peak is not None:
            peak[stage] = int(torch.cuda.max_memory_allocated(device))
    return time.perf_counter()


def _uint8_to_model(frames: np.ndarray, device: torch.device) -> Tensor:
    """``uint8 [F, H, W, 3]`` -> float ``[1, F, 3, H, W]`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    return (x / 127.5 - 1.0).permute(0, 3, 1, 2).unsqueeze(0)


def _to_uint8_frames(video: Tensor) -> np.ndarray:
    """float ``[N, F, 3, H, W]`` -> ``uint8 [N, F, H, W, 3]`` (clamp, then truncate)."""
    x = ((video.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()


def _stage_callback(stage: str, progress: Progress | None) -> Callable[[int, int, object], None] | None:
    if progress is None:
        return None
    return lambda step, total, state: progress(stage, step, total)


def _base_stage(
    requests: Sequence[GenerationRequest], models: LoadedModels, x_T: AV, progress: Progress | None
) -> tuple[Tensor, Tensor, int, int]:
    """Base sampling: returns ``video [N, F, 3, H, W]``, ``audio [N, 1, L]`` (float, unclamped),
    forward and backward pass counts. Several requests: one batch (see :func:`generate_batch`)."""
    request = requests[0]
    cfg = models.unet_cfg
    shift_gens = [_cpu_generator(derive_seed(r.seed, "window-shifts")) for r in requests]
    groups = [(g, r.num_samples) for g, r in zip(shift_gens, requests)]
    c_v, c_a = cfg.video_size[1], cfg.audio_size[0]

    def eps(video: Tensor, audio: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        # The samplers pass integer timesteps (DPM-Solver: int32); the network takes float.
        if len(groups) == 1:
            out_v, out_a = models.unet(video, audio, t.to(torch.float32), generator=shift_gens[0])
        else:
            out_v, out_a = models.unet(video, audio, t.to(torch.float32), shift_groups=groups)
        # learn_sigma models also predict variance channels; the samplers use eps only.
        return out_v[:, :, :c_v].float(), out_a[:, :c_a].float()

    counter = count_nfe(eps)
    noise = _group_noise([_cpu_generator(derive_seed(r.seed, "base-sampler")) for r in requests],
                         [r.num_samples for r in requests])
    callback = _stage_callback("base", progress)
    if request.mode == "joint":
        with torch.no_grad():
            out = sample_joint(counter, x_T, request.base_sampler, callback=callback, noise_fn=noise)
    else:
        if request.mode == "video-to-audio":
            assert request.condition_video is not None
            condition = _uint8_to_model(request.condition_video, models.device)
            condition = condition.expand(request.num_samples, -1, -1, -1, -1)
        else:
            assert request.condition_audio is not None
            audio = torch.from_numpy(request.condition_audio).to(models.device, torch.float32)
            condition = audio.reshape(1, 1, -1).expand(request.num_samples, -1, -1)
        grad = request.guidance == "gradient" and request.guidance_scale > 0
        with torch.set_grad_enabled(grad):
            out = sample_conditional(
                counter, x_T, request.base_sampler, condition=condition.contiguous(),
                direction=request.mode, guidance=request.guidance, scale=request.guidance_scale,
                callback=callback, noise_fn=noise,
            )
    return out.video.detach(), out.audio.detach(), counter.forward, counter.backward


def _sr_stage(
    requests: Sequence[GenerationRequest], models: LoadedModels, video: Tensor,
    mains: Sequence[torch.Generator], progress: Progress | None,
) -> tuple[Tensor, int, int]:
    """Upsample every frame of ``video [N, F, 3, h, w]`` -> ``[N, F, 3, h*s, w*s]`` with
    ``s = large_size / small_size`` of the SR config; returns it, SR steps per frame, SR calls."""
    assert models.sr is not None and models.sr_cfg is not None
    sr_cfg = models.sr_cfg
    if sr_cfg.large_size % sr_cfg.small_size:
        raise ValueError(
            f"SR config large_size {sr_cfg.large_size} is not a multiple of small_size "
            f"{sr_cfg.small_size}; use an SR preset with an integer upsampling factor"
        )
    factor = sr_cfg.large_size // sr_cfg.small_size
    n, f, c, h, w = video.shape
    low_res = video.reshape(n * f, c, h, w)
    request = requests[0]
    x_T = torch.cat([  # each job's clip noise from its own main generator, after its x_T
        shared_clip_noise(r.num_samples, f, (c, h * factor, w * factor), generator=g)
        for r, g in zip(requests, mains)
    ]).to(models.device)
    sr_net = models.sr

    def eps(x: Tensor, t: Tensor, low_res: Tensor) -> Tensor:
        return sr_net(x, t.to(torch.float32), low_res).float()

    counter = count_nfe(eps)
    if len(requests) == 1:
        noise = _cpu_noise(_cpu_generator(derive_seed(request.seed, "sr-sampler")))
    else:  # batch_key() keeps stochastic SR samplers out of batches
        noise = _no_noise
    chunk = models.sr_batch_frames or request.sr_chunk_frames
    starts = list(range(0, n * f, chunk))
    done_steps = 0  # steps of finished chunks, for one overall progress bar
    outputs: list[Tensor] = []
    per_frame_nfe = 0
    for index, begin in enumerate(starts):
        chunk_total = [0]

        def track(step: int, total: int, state: object, _done: int = done_steps,
                  _left: int = len(starts) - index) -> None:
            # Overall SR progress: finished chunks + this chunk, remaining chunks at this total.
            chunk_total[0] = total
            if progress is not None:
                progress("sr", _done + step, _done + total * _left)

        calls_before = counter.forward
        with torch.no_grad():
            part = sample_sr(
                counter, x_T[begin : begin + chunk], request.sr_sampler,
                low_res=low_res[begin : begin + chunk], callback=track, noise_fn=noise,
            )
        outputs.append(part)
        done_steps += chunk_total[0]
        per_frame_nfe = counter.forward - calls_before
    high = torch.cat(outputs).reshape(n, f, c, h * factor, w * factor)
    return high, per_frame_nfe, counter.forward


def _no_noise(step: int, like: object) -> object:
    raise RuntimeError("a batched SR stage must use a deterministic sampler (see batch_key)")

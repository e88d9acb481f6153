"""The measurements of ``bench/gpu_check.py``, one function per section; each returns rows
(dicts of figures) and checks ``ctx.time_left()`` between its items, so that an item that
would overrun the section's share of the time is recorded as skipped instead of run.

Relative error of a forward: ``max |out - ref| / max |ref|`` over every output element (the
base model: the larger of video and audio), ``ref`` = the same weights and inputs in float32 on
the CPU. Peak memory: ``torch.cuda.max_memory_allocated`` per stage on CUDA, the process's RSS
growth over the stage start on the CPU (``bench.pipeline.RssPeak``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo
from torch import Tensor, nn

from bench.forward_cases import ForwardCase, clock, count_flops
from model.attention import set_sdpa_backend
from model.pipeline import GenerationRequest, GenerationResult, LoadedModels, generate_batch
from model.precision import apply_precision
from model.registry import load_models
from model.samplers import SamplerSpec
from model.speed import SpeedOptions, apply_speed

Row = dict[str, Any]

# Dense (no sparsity) tensor-core peaks in TFLOP/s by device name (NVIDIA data sheets): fp16 and
# bf16 are equal on these parts; "fp32" is TF32 (what cuDNN convolutions use for float32 by
# default). First matching substring wins, so the specific H100 variants come before "H100".
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"fp16": 756.0, "bf16": 756.0, "fp32": 378.0}),
    ("H100 NVL", {"fp16": 835.0, "bf16": 835.0, "fp32": 418.0}),
    ("H100", {"fp16": 989.0, "bf16": 989.0, "fp32": 494.0}),  # SXM ("H100 80GB HBM3")
    ("H200", {"fp16": 989.0, "bf16": 989.0, "fp32": 494.0}),
    ("A100", {"fp16": 312.0, "bf16": 312.0, "fp32": 156.0}),
    ("L40S", {"fp16": 362.0, "bf16": 362.0, "fp32": 183.0}),
    ("L4", {"fp16": 121.0, "bf16": 121.0, "fp32": 60.0}),
)


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak of ``device_name`` for ``precision`` (None: not in :data:`PEAK_TFLOPS`)."""
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peaks[precision]
    return None


@dataclass(frozen=True)
class Profile:
    """What a run measures: ``gpu`` (official sizes and settings) or ``dry`` (CPU, tiny presets,
    the same samplers with at most 3 steps)."""

    device: str
    unet: str
    sr: str
    precision: str  # jobs, throughput and timings (parity runs every precision)
    fast_base: SamplerSpec
    fast_sr: SamplerSpec
    official_base: SamplerSpec
    official_sr: SamplerSpec
    conditional: SamplerSpec  # video-to-audio with gradient guidance
    sr_batch: int  # SR frames per network call (the worker's MMD_SR_MAX_BATCH_FRAMES)
    compile_backend: str
    batches: tuple[int, ...]
    repeats: int  # timed forwards per variant (median)
    compile_need_s: float  # a compiled variant starts only with this much time left


class Context:
    """Shared state of one run: the profile, the time left, models loaded once."""

    def __init__(self, profile: Profile, time_left: Callable[[], float]) -> None:
        self.p = profile
        self.time_left = time_left
        self._models: LoadedModels | None = None
        self.job_rows: list[Row] = []
        self.forward_rows: list[Row] = []

    @property
    def cuda(self) -> bool:
        return torch.device(self.p.device).type == "cuda"

    def models(self) -> LoadedModels:
        """The worker's models (default speed options) at the profile's precision, loaded once."""
        if self._models is None:
            self._models = load_models("gpu-check", preset=self.p.unet, sr_preset=self.p.sr,
                                       device=self.p.device, precision=self.p.precision,
                                       speed=SpeedOptions(), sr_batch_frames=self.p.sr_batch)
        return self._models


class StagePeak:
    """Peak memory of a stage: CUDA max allocated, else the RSS growth (bytes; None unknown)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        if not cuda:
            from bench.pipeline import RssPeak
            self.rss = RssPeak()
        self.reset()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.rss.reset()

    def read(self) -> int | None:
        if self.cuda:
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        return self.rss.growth()


def _outputs(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(t.detach().float().cpu() for t in (out if isinstance(out, tuple) else (out,)))


def _rel_err(out: Sequence[Tensor], ref: Sequence[Tensor]) -> float:
    return max(float((o - r).abs().max() / r.abs().max().clamp_min(1e-30))
               for o, r in zip(out, ref, strict=True))


def parity(ctx: Context) -> list[Row]:
    """Base and SR forward (batch 1, official size) in fp32, fp16 and bf16 on the device
    against CPU float32 with the same weights and inputs."""
    rows: list[Row] = []
    for name, preset in (("base", ctx.p.unet), ("sr", ctx.p.sr)):
        cpu = ForwardCase.build(name, preset, "cpu", fixed_shifts=True)
        ref = _outputs(cpu.run())
        for precision in ("fp32", "fp16", "bf16"):
            row: Row = {"item": f"{name} {precision}"}
            rows.append(row)
            if ctx.time_left() <= 0:
                row["skipped"] = "section time spent"
                continue
            try:
                case = cpu.to(ctx.p.device)
                apply_precision(case.model, precision)
                apply_speed(case.model, SpeedOptions(), device=torch.device(ctx.p.device))
                out = _outputs(case.run())
                row["max_rel_err"] = _rel_err(out, ref)
                row["nonfinite"] = int(sum(int((~o.isfinite()).sum()) for o in out))
                del case
            except Exception as exc:  # noqa: BLE001 - recorded, the next precision still runs
                row["error"] = f"{type(exc).__name__}: {exc}"
    return rows


class NonFinite:
    """Counts NaN/inf output elements of a module's forwards (a forward hook; the count stays
    on the device until :meth:`count`, so the hook adds no synchronisation)."""

    def __init__(self, module: nn.Module) -> None:
        self.total: Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: nn.Module, _inp: object, out: object) -> None:
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, Tensor):
                bad = (~t.detach().isfinite()).sum()
                self.total = bad if self.total is None else self.total + bad.to(self.total.device)

    def count(self) -> int:
        return 0 if self.total is None else int(self.total)

    def remove(self) -> None:
        self.handle.remove()


def run_job(ctx: Context, requests: Sequence[GenerationRequest], mux_to: Path | None) -> Row:
    """One batch of jobs through ``generate_batch``: seconds and peak memory per stage (CUDA:
    the pipeline's own record, ``GenerationResult.peak_memory_bytes``; CPU: RSS growth)."""
    models = ctx.models()
    rss = None if ctx.cuda else StagePeak(cuda=False)
    peaks: dict[str, int | None] = {}

    def progress(stage: str, step: int, total: int) -> None:
        if rss is not None and stage == "base" and step == total and "base" not in peaks:
            peaks["base"] = rss.read()
            rss.reset()

    start = clock(ctx.p.device)
    results = generate_batch(requests, models,
                             progress_fns=[progress] + [None] * (len(requests) - 1))
    wall = clock(ctx.p.device) - start
    result = results[0]
    assert isinstance(result, GenerationResult)
    if rss is not None:
        peaks["sr" if requests[0].super_resolution else "base"] = rss.read()
    else:  # a stage missing here is reported as None (the worker's metric would lack it too)
        peaks = {stage: result.peak_memory_bytes.get(stage) for stage in result.stage_seconds}
    row: Row = {"base_s": result.stage_seconds["base"], "sr_s": result.stage_seconds.get("sr", 0.0),
                "wall_s": wall, "nfe_base": result.nfe["base"],
                "nfe_base_backward": result.nfe["base_backward"],
                "nfe_sr_per_frame": result.nfe.get("sr", 0), "frames": result.frames.shape[1],
                "size": f"{result.frames.shape[2]}x{result.frames.shape[3]}",
                "audio_nonfinite": int(sum((~np.isfinite(r.audio)).sum() for r in results if r)),
                **{f"peak_{k}_mib": None if v is None else v / 2**20 for k, v in peaks.items()}}
    if mux_to is not None:
        peak = StagePeak(ctx.cuda)
        try:
            from worker.muxing import mux_mp4  # PyAV: carried as a wheel on the GPU machine
            t0 = time.perf_counter()
            mux_mp4(mux_to, result.frames[0], result.audio[0], fps=result.fps,
                    sample_rate=result.sample_rate)
            row["mux_s"] = time.perf_counter() - t0
            row["mp4_bytes"] = mux_to.stat().st_size
            row["peak_mux_mib"] = None if (b := peak.read()) is None else b / 2**20
        except Exception as exc:  # noqa: BLE001 - no PyAV there: the model figures still count
            row["mux_error"] = f"{type(exc).__name__}: {exc}"
        row["total_s"] = row["base_s"] + row["sr_s"] + row.get("mux_s", 0.0)
    return row


def jobs(ctx: Context) -> list[Row]:
    """Joint job (base + SR + MP4) with the fast and the official preset; video-to-audio with
    gradient guidance. A warm-up job (fast preset, not reported) runs first."""
    p = ctx.p
    models = ctx.models()
    frames, _, size, _ = models.unet_cfg.video_size
    condition = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    cases: list[tuple[str, GenerationRequest]] = [
        ("joint fast", GenerationRequest(seed=1, base_sampler=p.fast_base, sr_sampler=p.fast_sr)),
        ("joint official", GenerationRequest(seed=1, base_sampler=p.official_base,
                                             sr_sampler=p.official_sr)),
        ("video-to-audio gradient", GenerationRequest(
            mode="video-to-audio", seed=1, base_sampler=p.conditional, sr_sampler=p.fast_sr,
            guidance="gradient", condition_video=condition)),
    ]
    run_job(ctx, [GenerationRequest(seed=0, base_sampler=p.fast_base, sr_sampler=p.fast_sr)], None)
    counters = {"base": NonFinite(models.unet)}
    if models.sr is not None:
        counters["sr"] = NonFinite(models.sr)
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for item, request in cases:
                if ctx.time_left() <= 0:
                    rows.append({"item": item, "skipped": "section time spent"})
                    continue
                before = {k: c.count() for k, c in counters.items()}
                try:
                    row = {"item": item, **run_job(ctx, [request], Path(tmp) / "out.mp4")}
                    for k, c in counters.items():
                        row[f"{k}_nonfinite"] = c.count() - before[k]
                except Exception as exc:  # noqa: BLE001 - recorded, the next job still runs
                    row = {"item": item, "error": f"{type(exc).__name__}: {exc}"}
                rows.append(row)
    finally:  # the hooks would slow the later sections
        for counter in counters.values():
            counter.remove()
    ctx.job_rows = rows
    return rows


def throughput(ctx: Context) -> list[Row]:
    """1, 4, 8 concurrent fast joint jobs run as one batch (``generate_batch``): jobs/min."""
    rows: list[Row] = []
    for n in ctx.p.batches:
        if ctx.time_left() <= 0:
            rows.append({"item": f"{n} jobs", "skipped": "section time spent"})
            continue
        requests = [GenerationRequest(seed=100 + i, base_sampler=ctx.p.fast_base,
                                      sr_sampler=ctx.p.fast_sr) for i in range(n)]
        try:
            row = run_job(ctx, requests, None)
            rows.append({"item": f"{n} jobs", "jobs": n, "jobs_per_min": 60.0 * n / row["wall_s"],
                         **row})
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at 8: 1 and 4 still count
            rows.append({"item": f"{n} jobs", "error": f"{type(exc).__name__}: {exc}"})
        if ctx.cuda:
            torch.cuda.empty_cache()
    return rows


# Forward variants: (label, options). Each SDPA backend on the worker's default layout.
EAGER_VARIANTS: tuple[tuple[str, SpeedOptions], ...] = (
    ("eager", SpeedOptions(channels_last=False)),
    ("channels-last", SpeedOptions(channels_last=True, channels_last_base=True)),
    *((f"sdpa {b}", SpeedOptions(sdpa_backend=b)) for b in ("math", "flash", "efficient", "cudnn")),
)


def _time_variant(ctx: Context, name: str, preset: str, label: str, options: SpeedOptions,
                  batch: int) -> Row:
    dev = torch.device(ctx.p.device)
    case = ForwardCase.build(name, preset, dev, batch=batch)
    apply_precision(case.model, ctx.p.precision)
    apply_speed(case.model, options, device=dev)
    peak = StagePeak(ctx.cuda)
    t0 = clock(dev)
    out = case.run()  # first call: compiles (compile / CUDA graphs), autotunes, allocates
    first = clock(dev) - t0
    case.run()
    times = []
    for _ in range(ctx.p.repeats):
        t0 = clock(dev)
        case.run()
        times.append(clock(dev) - t0)
    median = statistics.median(times)
    row: Row = {"item": f"{name} {label}", "batch": batch, "first_call_s": first,
                "median_s": median, "min_s": min(times),
                "nonfinite": int(sum(int((~o.isfinite()).sum()) for o in _outputs(out))),
                "peak_mib": None if (b := peak.read()) is None else b / 2**20}
    if name == "sr":  # the SR net runs frame by frame: seconds per frame of the batch
        row["per_frame_s"] = median / batch
    return row


def _forward_rows(ctx: Context, variants: Sequence[tuple[str, SpeedOptions]],
                  need_s: float = 0.0) -> list[Row]:
    """Time every variant of both networks; a variant starts only with ``need_s`` seconds (or
    the longest first call of the same network so far, a compile) left in the section."""
    rows: list[Row] = []
    for name, preset, batch in (("base", ctx.p.unet, 1), ("sr", ctx.p.sr, ctx.p.sr_batch)):
        for label, options in variants:
            item = f"{name} {label}"
            if options.cuda_graphs and not ctx.cuda:
                rows.append({"item": item, "skipped": "CUDA graphs need CUDA"})
                continue
            need = max([need_s] + [r["first_call_s"] for r in rows
                                   if "first_call_s" in r and r["item"].startswith(name)])
            if ctx.time_left() <= need:
                rows.append({"item": item, "skipped": f"would overrun: "
                             f"{max(ctx.time_left(), 0):.0f} s left, needs ~{need:.0f} s"})
                continue
            try:
                rows.append(_time_variant(ctx, name, preset, label, options, batch))
            except Exception as exc:  # noqa: BLE001 - a kernel not eligible here, a compile failure
                rows.append({"item": item, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            finally:
                set_sdpa_backend("auto")
                torch._dynamo.reset()
                if ctx.cuda:
                    torch.cuda.empty_cache()
    ctx.forward_rows.extend(rows)
    return rows


def forward(ctx: Context) -> list[Row]:
    """Base forward (batch 1) and SR forward (``sr_batch`` frames) per speed path, eager."""
    return _forward_rows(ctx, EAGER_VARIANTS)


def forward_compiled(ctx: Context) -> list[Row]:
    """The same with ``torch.compile`` and CUDA graphs (``mode="reduce-overhead"``)."""
    return _forward_rows(ctx, (
        ("compile", SpeedOptions(compile=True, compile_backend=ctx.p.compile_backend)),
        ("cuda-graphs", SpeedOptions(cuda_graphs=True)),
    ), need_s=ctx.p.compile_need_s)


def mfu(ctx: Context) -> list[Row]:
    """SR stage FLOP/s of the measured joint jobs, and of the fastest SR forward, against the
    device's dense peak for the profile's precision."""
    flops_frame = count_flops("sr", ctx.p.sr)
    name = torch.cuda.get_device_name() if ctx.cuda else "cpu"
    peak = peak_tflops(name, ctx.p.precision) if ctx.cuda else None
    rows: list[Row] = []
    for job in ctx.job_rows:
        if job.get("sr_s") and "error" not in job:
            flops = flops_frame * job["nfe_sr_per_frame"] * job["frames"]
            achieved = flops / job["sr_s"] / 1e12
            rows.append({"item": f"sr stage, {job['item']}", "sr_tflop": flops / 1e12,
                         "tflops": achieved, "peak_tflops": peak,
                         "mfu": None if peak is None else achieved / peak})
    timed = [r for r in ctx.forward_rows if r.get("per_frame_s")]
    if timed:
        best = min(timed, key=lambda r: r["per_frame_s"])
        achieved = flops_frame / best["per_frame_s"] / 1e12
        rows.append({"item": f"{best['item']} (fastest SR forward)", "tflops": achieved,
                     "peak_tflops": peak, "mfu": None if peak is None else achieved / peak})
    if not rows:
        rows.append({"item": "sr stage", "error": "no joint job figures (jobs section failed "
                     "or skipped)", "gflop_per_frame": flops_frame / 1e9})
    return rows


def short(spec: SamplerSpec, steps: int = 3) -> SamplerSpec:
    """``spec`` with at most ``steps`` steps (order capped at the steps): the dry run's sampler."""
    n = min(spec.steps, steps)
    return replace(spec, steps=n, order=min(spec.order, n))

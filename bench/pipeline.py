"""Seconds per pipeline stage (decode, base, sr, mux, upload) for one job end to end, and peak
memory per stage, printed as one table.

    python3 bench/pipeline.py                          # tiny preset, CPU, fast settings
    python3 bench/pipeline.py --official               # official settings (DPM-Solver 20 / SR DDIM
    25)
    python3 bench/pipeline.py --device cpu --device cuda --official --mode all
    python3 bench/pipeline.py --fast --plain-ratio     # fast samplers; also the plain path, ratio

Stages: ``decode`` = decoding the conditioning input at the model size (a 16-frame clip and its
audio, from ``--input`` or the released landscape clip, else a clip written on the fly), ``base``
and ``sr`` = the pipeline's own stage timers (CUDA-synchronised), ``mux`` = writing the MP4,
``upload`` = what the worker's upload stage does (sha256, ``put_file`` through the real
``core.storage`` local backend into a temp dir, size read back).
Weights are random (timing does not depend on them). The first run per device is a warm-up
(not reported) unless ``--no-warmup``. ``--plain-ratio`` repeats each row on the plain path
(what the official code computes: fp32, math attention, NCHW, eager, SR batch 1 frame; with
``--fast`` also the official sampler settings, else the row's own) in the same run and prints
optimised/plain. Peak memory per stage: with CUDA
``torch.cuda.max_memory_allocated`` of base and sr (the worker's ``mmd_peak_memory_bytes``);
always the process's peak RSS growth over the RSS at the start of each stage (Linux: the
high-water mark ``VmHWM`` is reset per stage through ``/proc/self/clear_refs``; n/a elsewhere).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.storage import LocalStorage, Storage
from core.store import result_key
from model.pipeline import GenerationRequest, generate
from model.registry import load_models, shipped_weights
from model.samplers import SamplerSpec
from model.speed import PLAIN, SpeedOptions
from worker.media import decode_audio, decode_video_clip, mux_mp4
from worker.sampling import preset_specs

FAST_BASE, FAST_SR = preset_specs("fast")
OFFICIAL_BASE, OFFICIAL_SR = preset_specs("official")

DEFAULT_CLIP = Path(__file__).resolve().parent.parent.parent / "shared" / "media" / "landscape.mp4"
MODES = ("joint", "video-to-audio", "audio-to-video")


def _input_clip(path: Path | None, folder: Path) -> Path:
    if path is not None:
        return path
    if DEFAULT_CLIP.is_file():
        return DEFAULT_CLIP
    clip = folder / "input.mp4"
    rng = np.random.default_rng(0)
    mux_mp4(clip, rng.integers(0, 256, (40, 256, 256, 3), dtype=np.uint8),
            rng.uniform(-0.5, 0.5, 4 * 16000).astype(np.float32), fps=10, sample_rate=16000)
    return clip


class RssPeak:
    """Peak resident memory of this process per stage (Linux ``/proc/self``; else n/a = None)."""

    def __init__(self) -> None:
        self.start_kb = 0
        self.ok = True
        self.reset()

    @staticmethod
    def _status(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        if match is None:
            raise OSError(f"no {field} in /proc/self/status")
        return int(match.group(1))

    def reset(self) -> None:
        """Start a stage: the high-water mark drops to the current RSS."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.start_kb = self._status("VmRSS")
        except OSError:
            self.ok = False

    def growth(self) -> int | None:
        """Bytes the RSS peaked above its value at the last :meth:`reset`; None if unknown."""
        if not self.ok:
            return None
        try:
            return max(0, self._status("VmHWM") - self.start_kb) * 1024
        except OSError:
            return None


def upload(storage: Storage, path: Path, key: str) -> int:
    """The worker's upload stage (``worker.runner.JobRunner._upload``) for one MP4."""
    hashlib.sha256(path.read_bytes()).hexdigest()
    size = storage.put_file(key, path, content_type="video/mp4")
    if storage.size(key) != size:
        raise RuntimeError(f"{key} reads back as {storage.size(key)} bytes, wrote {size}")
    return size


def bench_one(args: argparse.Namespace, device: str, mode: str, clip: Path, folder: Path,
              plain: bool = False) -> dict:
    speed = PLAIN if plain else SpeedOptions(compile=args.compile)
    shipped = shipped_weights(args.preset) or {}  # demo: its trained weights (same timing)
    models = load_models(args.preset, preset=args.preset, device=device, speed=speed,
                         checkpoint=shipped.get("base"), sr_checkpoint=shipped.get("sr"),
                         precision="fp32" if plain else args.precision,
                         sr_batch_frames=1 if plain else None)
    frames, _, size, _ = models.unet_cfg.video_size
    length = models.unet_cfg.audio_size[1]
    if args.official or (plain and args.fast):  # fast's plain counterpart: official settings
        base, sr = OFFICIAL_BASE, OFFICIAL_SR
    elif args.fast:
        base, sr = FAST_BASE, FAST_SR
    else:
        base = SamplerSpec(name="dpm_solver", steps=args.steps, order=min(args.order, args.steps))
        sr = SamplerSpec(name="ddim", steps=args.sr_steps)
    runs = [False, True] if args.warmup else [True]
    row: dict = {}
    storage = LocalStorage(folder / "storage")
    rss = RssPeak()
    for report in runs:
        rss_peak: dict[str, int | None] = {}
        rss.reset()
        t0 = time.perf_counter()
        video = decode_video_clip(clip, start_s=1.0, num_frames=frames,
                                  fps=models.unet_cfg.fps, size=size)
        audio = decode_audio(clip, start_s=1.0, num_samples=length,
                             sample_rate=models.unet_cfg.sample_rate)
        decode_s = time.perf_counter() - t0
        rss_peak["decode"] = rss.growth()
        cond = {"video-to-audio": {"condition_video": video},
                "audio-to-video": {"condition_audio": audio}}.get(mode, {})
        request = GenerationRequest(mode=mode, seed=0, base_sampler=base, sr_sampler=sr,
                                    sr_chunk_frames=args.sr_chunk_frames, **cond)

        def progress(stage: str, step: int, total: int, request: GenerationRequest = request,
                     rss_peak: dict[str, int | None] = rss_peak) -> None:
            if stage == "base" and step == total and request.super_resolution:  # base ends
                rss_peak["base"] = rss.growth()
                rss.reset()

        rss.reset()
        result = generate(request, models, progress=progress)
        rss_peak["sr" if request.super_resolution else "base"] = rss.growth()
        rss.reset()
        t0 = time.perf_counter()
        mux_mp4(folder / "out.mp4", result.frames[0], result.audio[0], fps=result.fps,
                sample_rate=result.sample_rate)
        mux_s = time.perf_counter() - t0
        rss_peak["mux"] = rss.growth()
        rss.reset()
        t0 = time.perf_counter()
        upload(storage, folder / "out.mp4", result_key(f"bench-{mode}", 0))
        upload_s = time.perf_counter() - t0
        rss_peak["upload"] = rss.growth()
        if report:
            row = {
                "device": device + ("/plain" if plain else ""), "mode": mode, "decode": decode_s,
                "peak": result.peak_memory_bytes,
                "base": result.stage_seconds["base"], "sr": result.stage_seconds.get("sr", 0.0),
                "mux": mux_s, "upload": upload_s, "nfe": result.nfe, "rss": dict(rss_peak),
                "size": f"{result.frames.shape[2]}x{result.frames.shape[3]}",
            }
    row["total"] = row["decode"] + row["base"] + row["sr"] + row["mux"] + row["upload"]
    return row


def _spec(spec: SamplerSpec) -> str:
    method = f" {spec.method}" if spec.is_dpm else ""
    return f"{spec.name}{method} {spec.steps}" + (f"/{spec.order}" if spec.is_dpm else "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", action="append", help="cpu, cuda (repeatable; default cpu, and "
                   "cuda too when available)")
    p.add_argument("--mode", default="joint", choices=(*MODES, "all"))
    p.add_argument("--official", action="store_true",
                   help="official settings: DPM-Solver 20 steps order 3, SR DDIM 25 steps")
    p.add_argument("--fast", action="store_true",
                   help="fast settings (the fast preset, core/sampling.py)")
    p.add_argument("--plain-ratio", action="store_true",
                   help="also run the plain path (fp32, math, NCHW, SR batch 1; official "
                   "settings with --fast) and print ratios")
    p.add_argument("--compile", action="store_true", help="torch.compile (warm-up compiles)")
    p.add_argument("--steps", type=int, default=3, help="plain mode: DPM-Solver steps (default 3)")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--sr-steps", type=int, default=3, help="plain mode: SR DDIM steps (default 3)")
    p.add_argument("--sr-chunk-frames", type=int, default=16)
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--input", type=Path,
                   help="clip to decode (default: the released landscape clip)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    modes = list(MODES) if args.mode == "all" else [args.mode]
    settings = ("official (dpm_solver 20/3, SR ddim 25)" if args.official
                else f"fast ({_spec(FAST_BASE)}, SR {_spec(FAST_SR)}; plain row: official)"
                if args.fast
                else f"plain (dpm_solver {args.steps}/{args.order}, SR ddim {args.sr_steps})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = _input_clip(args.input, folder)
        rows = [bench_one(args, d, m, clip, folder, plain)
                for d in devices for m in modes
                for plain in ((False, True) if args.plain_ratio else (False,))]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"preset={args.preset} precision={args.precision} settings={settings} "
          f"threads={args.threads} gpu={gpu} torch={torch.__version__}")
    header = f"{'device':<12}{'mode':<16}{'size':>8}{'decode':>9}{'base':>9}{'sr':>9}{'mux':>8}" \
             f"{'upload':>8}{'total':>9}  NFE (base fwd/bwd, sr per frame, sr calls)"
    print(header)
    print("-" * len(header))
    for r in rows:
        nfe = r["nfe"]
        print(f"{r['device']:<12}{r['mode']:<16}{r['size']:>8}{r['decode']:>9.3f}{r['base']:>9.3f}"
              f"{r['sr']:>9.3f}{r['mux']:>8.3f}{r['upload']:>8.3f}{r['total']:>9.3f}  "
              f"{nfe['base']}/"
              f"{nfe['base_backward']}, {nfe.get('sr', 0)}, {nfe.get('sr_calls', 0)}")

    def mib(v: int | None) -> str:
        return "n/a" if v is None else f"{v / 2**20:.0f}"

    print("peak memory per stage, MiB: process RSS growth over the stage start"
          + (" | CUDA max allocated" if any(r["peak"] for r in rows) else ""))
    for r in rows:
        line = f"{r['device']:<12}{r['mode']:<16}" + "".join(
            f"{k} {mib(r['rss'].get(k))}  " for k in ("decode", "base", "sr", "mux", "upload"))
        if r["peak"]:
            line += "| " + ", ".join(f"{k} {mib(v)}" for k, v in r["peak"].items())
        print(line)
    if args.plain_ratio:
        for fast, plain in zip(rows[::2], rows[1::2], strict=False):
            print(f"{fast['device']} {fast['mode']}: optimised/plain total = "
                  f"{fast['total'] / plain['total']:.2f} (base {fast['base'] / plain['base']:.2f}"
                  + (f", sr {fast['sr'] / plain['sr']:.2f})" if plain["sr"] else ")"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

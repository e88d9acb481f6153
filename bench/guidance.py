"""Conditional guidance on the trained demo model: sync and colour-pitch per direction, base
sampler and guidance scale (model/demo/quality.py defines the metrics).

    python3 bench/guidance.py                                   # the table behind the defaults
    python3 bench/guidance.py --directions audio-to-video --samplers ddim:20,dpm_solver:20 \\
        --scales 3,100,300,1000 --samples 16

Every job runs alone, base only (no super-resolution: the scores are computed at base size
either way), with the shipped weights, seeds 1000.. and the world's clips of the same seeds as
conditions. Audio-to-video is scored on (generated video, condition audio), video-to-audio on
(condition video, generated audio). ``lit`` is the share of lit pixels (real clips: about 6 %;
guidance that is too strong lights more). This is how ``model.config.DEMO_GUIDANCE_SCALE`` and
the fast conditional preset (``core.sampling.PRESETS``) were chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from model.demo.quality import evaluate, frames_to_model
from model.demo.scoring import condition_clip, models_from_training
from model.demo.weights_io import load_demo_models
from model.pipeline import GenerationRequest, generate
from model.samplers import SamplerSpec


def sampler(text: str) -> SamplerSpec:
    """``name:steps`` or ``ddim:STEPSxR`` (DDIM with ``resample=R``) -> the spec (DPM-Solver:
    the fast presets' singlestep order 3)."""
    name, steps = text.split(":")
    steps, _, resample = steps.partition("x")
    return SamplerSpec(name=name, steps=int(steps),  # type: ignore[arg-type]
                       resample=int(resample or 1))


def run(models: object, direction: str, spec: SamplerSpec, scale: float, n: int,
        seed: int) -> tuple[object, float]:
    videos, audios = [], []
    start = time.perf_counter()
    for i in range(n):
        frames, audio = condition_clip(models, seed + i)  # type: ignore[arg-type]
        cond = ({"condition_audio": audio} if direction == "audio-to-video"
                else {"condition_video": frames})
        res = generate(GenerationRequest(mode=direction, seed=seed + i,  # type: ignore[arg-type]
                                         base_sampler=spec, super_resolution=False,
                                         guidance_scale=scale, **cond), models)  # type: ignore
        if direction == "audio-to-video":
            videos.append(frames_to_model(res.frames))
            audios.append(torch.from_numpy(audio[None]))
        else:
            videos.append(frames_to_model(frames[None]))
            audios.append(torch.from_numpy(res.audio))
    seconds = (time.perf_counter() - start) / n
    return evaluate(torch.cat(videos), torch.cat(audios)), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--directions", default="audio-to-video,video-to-audio")
    p.add_argument("--samplers", default="ddim:20,dpm_solver:20",
                   help="comma-separated name:steps, ddim:STEPSxR for DDIM with resample R "
                        "(default ddim:20,dpm_solver:20)")
    p.add_argument("--scales", default="3,100,300,1000")
    p.add_argument("--samples", type=int, default=16, help="jobs per row (16)")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--base-ckpt", help="demo training checkpoint (EMA weights) instead of the "
                                       "shipped weights")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    models = (models_from_training(args.base_ckpt) if args.base_ckpt
              else load_demo_models(sr=False))
    print("| direction | sampler | scale | n | sync | colour-pitch | lit | s/job |")
    print("|---|---|---|---|---|---|---|---|")
    for direction in args.directions.split(","):
        for text in args.samplers.split(","):
            for scale in (float(s) for s in args.scales.split(",")):
                q, sec = run(models, direction, sampler(text), scale, args.samples, args.seed)
                print(f"| {direction} | {text} | {scale:g} | {args.samples} | {q.sync:.3f} | "
                      f"{q.colour_pitch:.3f} | {q.lit:.3f} | {sec:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Quality of the demo model's generation: synchrony and colour-pitch agreement per mode, preset
and NFE, with seconds per job (model/demo/quality.py defines the metrics).

    python3 bench/quality.py                         # shipped weights (model/demo/weights)
    python3 bench/quality.py --samples 64 --cond-samples 16 --official-cond-samples 2
    python3 bench/quality.py --base-ckpt checkpoints/demo/base.pt --sr-ckpt checkpoints/demo/sr.pt

Rows: real clips and shuffled pairs (reference), then joint / video-to-audio / audio-to-video x
preset (fast, official: the service's sampler settings, model/speed.py) and the extra base NFE
values of ``--nfe`` (fast preset). Every job runs alone, with super-resolution, as the service
runs it (seconds per job = wall time of one job on this machine); V2A is scored on the condition
video and the generated audio, A2V on the generated video and the condition audio. Seeds
1000.. (the conditions are the world's clips of the same seeds). The official conditional
preset is DDPM 1000 steps with gradient guidance (1000 forward + 1000 backward passes): it gets
its own, smaller sample count.

Prompt guidance (``--prompts red,green,blue``; model/prompted.py, the shipped demo aligner):
a second table per mode of ``--prompt-modes`` (fast preset): the unguided jobs' share of events
in each colour (the baseline, ~1/3), then per prompt the guided jobs' share of events in the
prompted colour / pitch / both, sync, colour-pitch, seconds per job and the base NFE (forward +
backward passes). ``--prompt-scales`` (default: the aligner's default_scale) sweeps the weight.

    python3 bench/quality.py --modes "" --prompts red,green,blue --prompt-samples 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from model.demo.quality import Quality, evaluate
from model.demo.scoring import Score, models_from_training, score
from model.demo.train import base_geometry
from model.demo.world import render_clip
from worker.sampling import preset_specs


def _reference(geo_cfg: object, n: int, seed: int) -> tuple[Quality, Quality]:
    geo = base_geometry(geo_cfg)  # type: ignore[arg-type]
    clips = [render_clip(seed + i, geo) for i in range(n)]
    video = torch.stack([v for v, _ in clips])
    audio = torch.stack([a[0] for _, a in clips])
    return evaluate(video, audio), evaluate(video, audio.roll(1, 0))


def _row(label: str, mode: str, nfe: str, n: int, q: Quality, seconds: float | None) -> str:
    sec = f"{seconds:8.2f}" if seconds is not None else "       -"
    return (f"| {mode:14s} | {label:8s} | {nfe:>9s} | {n:3d} | {q.sync:6.3f} | "
            f"{q.colour_pitch:6.3f} | {sec} | {q.lit:5.3f} | {q.rms:5.3f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-ckpt", help="demo training checkpoint (EMA weights) instead of the "
                                       "shipped weights")
    p.add_argument("--sr-ckpt", help="SR training checkpoint (with --base-ckpt)")
    p.add_argument("--samples", type=int, default=64, help="joint jobs per row (64)")
    p.add_argument("--cond-samples", type=int, default=16,
                   help="fast conditional jobs per row (16)")
    p.add_argument("--official-cond-samples", type=int, default=2,
                   help="official (DDPM 1000) conditional jobs per row (2; 0 = skip)")
    p.add_argument("--nfe", default="10,25", help="extra fast-preset base steps (10,25)")
    p.add_argument("--modes", default="joint,video-to-audio,audio-to-video")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--no-sr", action="store_true",
                   help="shipped weights without super-resolution (scored at base size)")
    p.add_argument("--prompts", default="", help="prompt rows for these colours (e.g. "
                                                 "red,green,blue; default none)")
    p.add_argument("--prompt-scales", default="",
                   help="prompt guidance weights to run (default: the aligner's default_scale)")
    p.add_argument("--prompt-modes", default="joint", help="modes of the prompt rows (joint)")
    p.add_argument("--prompt-samples", type=int, default=16,
                   help="jobs per prompt row (16; conditional modes: --cond-samples)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.base_ckpt:
        models = models_from_training(args.base_ckpt, args.sr_ckpt)
        source = f"training checkpoints {args.base_ckpt}, {args.sr_ckpt}"
    else:
        from model.demo.weights_io import WEIGHTS_DIR, load_demo_models

        models = load_demo_models(sr=not args.no_sr)
        source = f"shipped weights {WEIGHTS_DIR}"
    sr_on = models.sr is not None
    print(f"# demo quality: {source}; SR {'on' if sr_on else 'off'}; {args.threads} threads")
    print("| mode           | preset   | base NFE  |   n |   sync | col-pi |  s/job   |  lit  "
          "|  rms  |")
    print("|----------------|----------|-----------|-----|--------|--------|----------|-------|-------|")
    real, shuffled = _reference(models.unet_cfg, args.samples, args.seed)
    print(_row("real", "reference", "-", args.samples, real, None))
    print(_row("shuffled", "reference", "-", args.samples, shuffled, None), flush=True)
    extra = [int(s) for s in args.nfe.split(",") if s.strip()]
    for mode in [m for m in args.modes.split(",") if m.strip()]:
        runs: list[tuple[str, int | None, int]] = []
        joint = mode == "joint"
        runs.append(("fast", None, args.samples if joint else args.cond_samples))
        runs += [("fast", k, args.samples if joint else args.cond_samples) for k in extra]
        runs.append(("official", None, args.samples if joint else args.official_cond_samples))
        for preset, steps, n in runs:
            if n <= 0:
                continue
            base, sr = preset_specs(preset, mode, steps)  # type: ignore[arg-type]
            s: Score = score(models, mode, base, sr if sr_on else None, n=n,  # type: ignore[arg-type]
                             seed=args.seed, label=preset)
            nfe = f"{base.name[:6]} {base.steps}" + (f"x{base.resample}" if base.resample > 1
                                                     else "")
            print(_row(preset, mode, nfe, n, s.quality,
                       s.seconds_per_job), flush=True)
    prompts = [c.strip() for c in args.prompts.split(",") if c.strip()]
    if prompts:
        _prompt_rows(models, args, prompts, sr_on)
    return 0


def _prompt_rows(models: object, args: argparse.Namespace, prompts: list[str],
                 sr_on: bool) -> None:
    aligner = getattr(models, "aligner", None)
    if aligner is None:
        raise SystemExit("these models have no prompt aligner (the demo weights' manifest "
                         "lists none): export one with `mmd train-demo --what aligner`")
    scales = [float(x) for x in args.prompt_scales.split(",") if x.strip()] or [
        aligner.default_scale]
    print("\n| mode           | prompt   | scale | base NFE fwd+bwd |   n | share c | share p | "
          "both  |  sync  | col-pi |  s/job  |")
    print("|----------------|----------|-------|------------------|-----|---------|---------|"
          "-------|--------|--------|---------|")
    for mode in [m for m in args.prompt_modes.split(",") if m.strip()]:
        n = args.prompt_samples if mode == "joint" else args.cond_samples
        base, sr = preset_specs("fast", mode)
        spec_sr = sr if sr_on else None
        plain = score(models, mode, base, spec_sr, n=n, seed=args.seed,  # type: ignore[arg-type]
                      share_of=prompts)
        for c in prompts:
            print(_prompt_row(mode, f"({c})", "-", plain, c), flush=True)
        for c in prompts:
            for w in scales:
                s = score(models, mode, base, spec_sr, n=n, seed=args.seed,  # type: ignore[arg-type]
                          prompt=c, prompt_scale=w)
                print(_prompt_row(mode, c, f"{w:g}", s, c), flush=True)


def _prompt_row(mode: str, prompt: str, scale: str, s: Score, colour: str) -> str:
    sh, q, nfe = s.shares[colour], s.quality, s.nfe or {}
    cost = f"{nfe.get('base', 0)}+{nfe.get('base_backward', 0)}"
    return (f"| {mode:14s} | {prompt:8s} | {scale:>5s} | {cost:>16s} | {s.n:3d} | "
            f"{sh.colour:7.3f} | {sh.pitch:7.3f} | {sh.both:5.3f} | {q.sync:6.3f} | "
            f"{q.colour_pitch:6.3f} | {s.seconds_per_job:7.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())

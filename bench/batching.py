"""Dynamic batching throughput: N concurrent compatible joint jobs run one by one (what a worker
with MMD_MAX_BATCH=1 does) against one batch (MMD_MAX_BATCH=N), through the real pipeline
(``model.pipeline.generate`` / ``generate_batch``), and how far the batched outputs are from the
solo ones. Measures the model part of a job (base + SR), not muxing, upload or the queue.

    python3 bench/batching.py                       # tiny preset, CPU, N = 4 and 8
    python3 bench/batching.py --preset official --device cuda --steps 20 --sr-steps 25 --jobs 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from model.pipeline import GenerationRequest, generate, generate_batch
from model.registry import load_models
from model.samplers import SamplerSpec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=10, help="base DPM-Solver steps (order 2)")
    p.add_argument("--sr-steps", type=int, default=5, help="SR DDIM steps")
    p.add_argument("--jobs", type=int, nargs="+", default=[4, 8], help="concurrent jobs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = load_models("bench", preset=args.preset, device=args.device, precision=args.precision)
    spec = dict(base_sampler=SamplerSpec(steps=args.steps, order=2),
                sr_sampler=SamplerSpec(name="ddim", steps=args.sr_steps))
    generate(GenerationRequest(seed=0, **spec), models)  # warm-up
    print(f"preset={args.preset} device={args.device} precision={args.precision} "
          f"base dpm_solver-{args.steps} sr ddim-{args.sr_steps} threads={args.threads}")
    print(f"{'jobs':>4} | {'one by one s':>12} | {'batched s':>9} | {'jobs/min alone':>14} | "
          f"{'jobs/min batch':>14} | {'speed-up':>8} | {'max audio diff':>14} | "
          f"{'pixels off by 1':>15}")
    for n in args.jobs:
        requests = [GenerationRequest(seed=100 + i, **spec) for i in range(n)]
        t0 = time.perf_counter()
        alone = [generate(r, models) for r in requests]
        t_alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = generate_batch(requests, models)
        t_batch = time.perf_counter() - t0
        audio = max(
            float(np.abs(a.audio - b.audio).max()) for a, b in zip(alone, batched, strict=True)
        )
        frames = np.concatenate(
            [
                np.abs(a.frames.astype(int) - b.frames.astype(int)).ravel()
                for a, b in zip(alone, batched, strict=True)
            ]
        )
        print(
            f"{n:>4} | {t_alone:>12.2f} | {t_batch:>9.2f} | {60 * n / t_alone:>14.1f} | "
            f"{60 * n / t_batch:>14.1f} | {t_alone / t_batch:>7.2f}x | {audio:>14.2e} | "
            f"{(frames > 0).mean():>8.1e} (max {frames.max()})"
        )


if __name__ == "__main__":
    main()

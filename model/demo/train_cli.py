"""``mmd train-demo``: train (or resume) the demo base or SR model on the demo world.

    mmd train-demo --what base --checkpoint checkpoints/demo/base.pt --minutes 55
    mmd train-demo --what sr --checkpoint checkpoints/demo/sr.pt --minutes 15
    mmd train-demo --export model/demo/weights --base checkpoints/demo/base.pt \
        --sr checkpoints/demo/sr.pt   # EMA weights -> fp16 files + MANIFEST.json

    mmd train-demo --what aligner --checkpoint checkpoints/demo/aligner.pt --steps 2000
    mmd train-demo --export model/demo/weights --aligner checkpoints/demo/aligner.pt \
        --command "..."   # the aligner's fp16 file + its MANIFEST.json entry (base/SR kept)

The aligner (``model/demo/aligner.py``) is trained from scratch on clean clips and on the base
model's clean estimates (the shipped base weights, or ``--base`` training checkpoint's EMA).
A base/SR checkpoint that exists is resumed (optimizer, EMA, step and generator states), so the same
command run again continues the run; ``--steps`` is the total step to stop at.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys

import torch

from model.demo.train import TrainSettings, train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmd train-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=("base", "sr", "aligner"), default="base",
                   help="which network to train (default base; aligner: the prompt aligner)")
    p.add_argument("--preset", default=None,
                   help="UNetConfig / SRConfig preset (default demo / demo_sr)")
    p.add_argument("--checkpoint", default=None,
                   help="training checkpoint to resume from and save to (keep it outside git)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop at this total step (base/SR 20000, aligner 2000)")
    p.add_argument("--minutes", type=float, default=None,
                   help="also stop after this many minutes of wall-clock time")
    p.add_argument("--batch", type=int, default=None, help="clips (base, 8) or frames (SR, 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (base/SR AdamW 5e-4, aligner Adam 2e-3)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (0.999)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data (0)")
    p.add_argument("--checkpoint-every", type=float, default=180.0,
                   help="seconds between checkpoint saves (180)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="instead of training: write the EMA weights of --base / --sr "
                        "checkpoints as fp16 files with sha256 and MANIFEST.json into DIR")
    p.add_argument("--base", default=None, help="base training checkpoint (with --export)")
    p.add_argument("--sr", default=None, help="SR training checkpoint (with --export)")
    p.add_argument("--aligner", default=None,
                   help="aligner training checkpoint (with --export: adds only the aligner)")
    p.add_argument("--command", default=None,
                   help="with --export: the training command(s) to record in the manifest")
    return p


_stop: list[bool] = [False]


def _request_stop(signum: int, frame: object) -> None:
    _stop[0] = True  # finish the current step, save, exit (a checkpoint of whole steps)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(max(1, args.threads))
    torch.set_flush_denormal(True)  # one run without it slowed from 0.6 s to ~17 s per step
    if args.export is not None:
        from model.demo.weights_io import export

        command = args.command or "mmd train-demo " + shlex.join(argv or sys.argv[1:])
        if args.aligner is not None and args.base is None and args.sr is None:
            from model.demo.weights_io import export_aligner

            print(f"wrote {export_aligner(args.export, checkpoint=args.aligner, command=command)}")
            return 0
        if args.base is None or args.sr is None:
            print("--export needs --base and --sr training checkpoints (or --aligner alone)",
                  file=sys.stderr)
            return 2
        path = export(args.export, base=args.base, sr=args.sr, command=command)
        print(f"wrote {path}")
        return 0
    if args.what == "aligner":
        return _train_aligner(args)
    preset = args.preset or ("demo" if args.what == "base" else "demo_sr")
    settings = TrainSettings(
        what=args.what, preset=preset, steps=args.steps or 20000, minutes=args.minutes,
        batch=args.batch or 8, lr=args.lr or 5e-4, ema=args.ema, seed=args.seed,
        checkpoint_every_s=args.checkpoint_every,
    )
    signal.signal(signal.SIGTERM, _request_stop)  # `kill PID`: finish the step, save, stop
    tr = train(settings, args.checkpoint, progress=not args.no_progress,
               should_stop=lambda: _stop[0])
    print(f"stopped at step {tr.step_count}" + (f"; saved {args.checkpoint}"
                                                 if args.checkpoint else ""))
    return 0


def _train_aligner(args: argparse.Namespace) -> int:
    from model.demo.train_aligner import AlignerSettings, train_aligner

    if args.checkpoint is None:
        print("--what aligner needs --checkpoint (where to write the trained aligner)",
              file=sys.stderr)
        return 2
    if args.base is not None:
        from model.demo.scoring import models_from_training

        models = models_from_training(args.base)
    else:
        from model.demo.weights_io import load_demo_models

        models = load_demo_models(sr=False, aligner=False)
    settings = AlignerSettings(steps=args.steps or 2000, batch=args.batch or 32, seed=args.seed,
                               lr=args.lr or 2e-3)
    ck = train_aligner(settings, models.unet, models.unet_cfg, args.checkpoint,
                       progress=not args.no_progress)
    print(f"saved {args.checkpoint}; held-out accuracy {ck['accuracy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

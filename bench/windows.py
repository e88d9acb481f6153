"""Whole-clip (windowed) generation: per-window cost, overlap agreement and the seam figure.

    python3 bench/windows.py                                  # tiny golden weights, CPU
    python3 bench/windows.py --steps 20 --order 3             # the fast preset's sampler
    python3 bench/windows.py --preset landscape --device cuda --directions video-to-audio

Methods (model/windowed.py): ``independent`` (windows sampled alone, crossfaded over the whole
overlap: the ablation), ``autoregressive`` (each window given half its overlap from what is
already generated, crossfaded over the other half), ``fused`` (MultiDiffusion: one clip state,
the windows' noise predictions fused at every evaluation).

Figures, per direction and method:

* ``agree``: disagreement of consecutive windows where both generated the content (the second
  half of each overlap, where no window is given anything): RMS(window k - window k-1) / RMS of
  the clip. For ``fused`` the windows' clean predictions at the last network evaluation.
* ``seam``: the audio envelope (RMS over blocks of ``window_samples / 32``) as a log level;
  mean |jump| between consecutive blocks at the joints (blocks touching an overlap) / mean
  |jump| inside windows (blocks a block away from any overlap); 1.0 = as smooth across joints
  as inside. For audio-to-video the same on video (mean |frame difference|).
* ``s/window``, NFE (forward, backward) per window.

Random (or golden tiny) weights make no meaningful sound: these figures judge the joining
machinery (does it introduce a jump the windows themselves do not have), not audio quality.
The figures that chose the method (2026-12-05, shared 2-core CPU) are in model/windowed.py's
docstring, from:

    python3 bench/windows.py --preset smooth --steps 20 --order 3 --contexts 0.5 1.0 \
        --seeds 0 1 2 3 4 5 6 7 [--ell 3 128]
    python3 bench/windows.py --preset tiny --steps 10 --order 2 --contexts 0.5 1.0 \
        --directions video-to-audio
    python3 bench/windows.py --cost landscape --steps 20 --order 3   # per-window TFLOP, 60 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import UNetConfig
from model.pipeline import LoadedModels
from model.registry import load_models
from model.samplers import SamplerSpec
from model.whole_clip import _condition_tensor, unet_window_net
from model.windowed import autoregressive, fused
from model.windows import WindowPlan, plan_windows

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden" / "unet_tiny.pt"


def condition(direction: str, plan: WindowPlan, size: int) -> Tensor:
    """A moving square on a slowly brightening background (uint8 ``[F, H, W, 3]``), or a
    3 Hz-modulated tone at a tenth of the sample rate (float ``[T]``)."""
    if direction == "video-to-audio":
        f = plan.frames
        x = torch.linspace(0, 1, size)
        bg = (40 + 120 * torch.arange(f) / f).reshape(f, 1, 1, 1).expand(f, size, size, 3).clone()
        for i in range(f):
            c = int((i * 0.7) % (size - 4))
            bg[i, c:c + 4, c:c + 4] = 250
        return (bg + 20 * x.reshape(1, 1, size, 1)).clamp(0, 255).to(torch.uint8)
    t = torch.arange(plan.samples) / plan.sample_rate
    tone = torch.sin(2 * torch.pi * 0.1 * plan.sample_rate * t)
    return (0.5 * tone * (0.6 + 0.4 * torch.sin(2 * torch.pi * 3 * t))).float()


def agreement(plan: WindowPlan, pieces: tuple[Tensor, ...], clip: Tensor, modality: str
              ) -> float:
    """RMS(window k - window k-1) over the second half of each overlap / RMS(clip)."""
    diffs = []
    for k in range(1, plan.count):
        w, p = plan.windows[k], plan.windows[k - 1]
        if modality == "video":
            a, b = w.frame_start + (w.overlap_frames + 1) // 2, w.frame_start + w.overlap_frames
            mine = pieces[k][:, a - w.frame_start:b - w.frame_start]
            theirs = pieces[k - 1][:, a - p.frame_start:b - p.frame_start]
        else:
            a = plan.sample_of(w.frame_start + (w.overlap_frames + 1) // 2)
            b = w.sample_start + w.overlap_samples
            mine = pieces[k][..., a - w.sample_start:b - w.sample_start]
            theirs = pieces[k - 1][..., a - p.sample_start:b - p.sample_start]
        diffs.append((mine - theirs).flatten())
    d = torch.cat(diffs)
    return float(d.pow(2).mean().sqrt() / clip.pow(2).mean().sqrt())


def seam(plan: WindowPlan, clip: Tensor, modality: str) -> tuple[float, float, float, float]:
    """(mean joint jump / mean inside jump, mean joint jump, mean inside jump, level at the
    joints - level inside in dB)."""
    if modality == "audio":
        hop = max(1, plan.window_samples // 16)
        x = clip.reshape(-1)[: clip.numel() // hop * hop].reshape(-1, hop)
        env = x.pow(2).mean(dim=1).sqrt() + 1e-4
        level = 20 * torch.log10(env)  # dB
        jumps = level.diff().abs()
        edges = [(j0 // hop, -(-j1 // hop)) for j0, j1 in plan.joints()]
    else:  # video [B, F, C, H, W]: mean |frame difference| between consecutive frames
        level = 20 * torch.log10(clip[0].std(dim=(1, 2, 3)) + 1e-4)  # per-frame contrast
        jumps = (clip[0, 1:] - clip[0, :-1]).abs().mean(dim=(1, 2, 3))
        edges = [(w.frame_start, w.frame_start + w.overlap_frames) for w in plan.windows[1:]]
    inner = torch.ones(level.shape[0], dtype=torch.bool)
    for a, b in edges:
        inner[a:b] = False
    joint_level = float(level[~inner].mean() - level[inner].mean())
    # jump i is between blocks i and i+1
    near = torch.zeros(jumps.shape[0], dtype=torch.bool)
    far = torch.ones(jumps.shape[0], dtype=torch.bool)
    for a, b in edges:
        near[max(0, a - 1):b] = True
        far[max(0, a - 2):b + 1] = False
    joint, inside = float(jumps[near].mean()), float(jumps[far].mean())
    return joint / inside, joint, inside, joint_level


def window_tflop(preset: str) -> tuple[float, float]:
    """TFLOP of one U-Net evaluation of one window: ``(forward, forward + guidance backward)``
    (the backward of the audio input, as video-to-audio guidance needs), counted on the meta
    device as bench/unet_forward.py does."""
    from torch.utils.flop_counter import FlopCounterMode

    from model import build_unet

    cfg = UNetConfig.preset(preset)
    with torch.device("meta"):
        model = build_unet(cfg).eval().requires_grad_(False)  # as load_models builds it
        video = torch.empty(1, *cfg.video_size)
        audio = torch.empty(1, *cfg.audio_size)
        t = torch.empty(1)
    shifts = [0] * model.num_cross_calls
    extra = {torch.ops.aten.baddbmm_: _baddbmm_flops}
    with FlopCounterMode(display=False, custom_mapping=extra) as fwd, torch.no_grad():
        model(video, audio, t, window_shifts=shifts)
    leaf = audio.clone().requires_grad_(True)
    with FlopCounterMode(display=False, custom_mapping=extra) as both:
        out_v, out_a = model(video, leaf, t, window_shifts=shifts)
        (out_v.sum() + out_a.sum()).backward()
    return fwd.get_total_flops() / 1e12, both.get_total_flops() / 1e12


def _baddbmm_flops(self_shape: object, a_shape: tuple[int, int, int], b_shape: tuple[int, ...],
                   *args: object, **kwargs: object) -> int:
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


def print_cost(preset: str, spec: SamplerSpec, fps: float, seconds: float) -> None:
    """Per-window TFLOP of ``spec`` with gradient guidance, and the windows of a clip."""
    cfg = UNetConfig.preset(preset)
    wf, ws = cfg.video_size[0], cfg.audio_size[1]
    fwd, both = window_tflop(preset)
    per_window = both * spec.steps  # one evaluation + one guidance backward per step
    plan = plan_windows(seconds, window_frames=wf, window_samples=ws,
                        overlap_frames=max(1, wf // 4), fps=fps,
                        sample_rate=round(ws * fps / wf))
    print(f"{preset}: one evaluation {fwd:.4g} TFLOP forward, {both:.4g} with the guidance "
          f"backward; {spec.name} {spec.steps} steps with gradient guidance = "
          f"{per_window:.4g} TFLOP per window; {seconds:g} s at {fps:g} fps = {plan.count} "
          f"windows (overlap {max(1, wf // 4)} frames) = {per_window * plan.count:.4g} TFLOP")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="tiny (golden weights), an official preset "
                    "(random weights) or 'smooth' (tests/model/smooth_standin.py, "
                    "8 frames of 8x8, 2048 samples)")
    ap.add_argument("--ell", type=float, nargs=2, default=[1.5, 24.0],
                    help="smooth stand-in correlation lengths (frames, samples)")
    ap.add_argument("--contexts", type=float, nargs="+", default=[0.5],
                    help="autoregressive context fractions to measure")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--overlap", type=int, default=None, help="frames (default window / 4)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--order", type=int, default=2)
    ap.add_argument("--scale", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--directions", nargs="+", default=["video-to-audio", "audio-to-video"])
    ap.add_argument("--methods", nargs="+", default=["independent", "autoregressive", "fused"])
    ap.add_argument("--cost", default=None, metavar="PRESET",
                    help="only print the per-window TFLOP of PRESET (e.g. landscape) and the "
                    "windows of a --cost-seconds clip, then exit")
    ap.add_argument("--cost-seconds", type=float, default=60.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cost:
        print_cost(args.cost, SamplerSpec(name="dpm_solver", steps=args.steps, order=args.order),
                   args.fps, args.cost_seconds)
        return
    if args.preset == "smooth":
        from tests.model.smooth_standin import smooth_standin

        cfg = UNetConfig.preset("tiny").with_(video_size=(8, 3, 8, 8))
        models = LoadedModels("smooth", torch.nn.Identity(), cfg, None, None,
                              torch.device(args.device), "fp32", True)
        ell_f, ell_s = args.ell

        def net(v: Tensor, a: Tensor, t: Tensor, gens: object) -> tuple[Tensor, Tensor]:
            return smooth_standin(v, a, t, ell_frames=ell_f, ell_samples=ell_s)
    elif args.preset == "tiny":
        sd = torch.load(GOLDEN, map_location="cpu", weights_only=False)["state_dict"]
        models = load_models("tiny", preset="tiny", checkpoint=sd, sr=False, device=args.device)
        net = unet_window_net(models)
    else:
        models = load_models(args.preset, preset=args.preset, sr=False, device=args.device)
        net = unet_window_net(models)
    cfg = models.unet_cfg
    wf, ws = cfg.video_size[0], cfg.audio_size[1]
    rate = round(ws * args.fps / wf)  # the rate that makes the window's seconds agree
    overlap = args.overlap if args.overlap is not None else max(1, wf // 4)
    frames = wf + (args.windows - 1) * (wf - overlap)
    plan = plan_windows(frames / args.fps, window_frames=wf, window_samples=ws,
                        overlap_frames=overlap, fps=args.fps, sample_rate=rate)
    spec = SamplerSpec(name="dpm_solver", steps=args.steps, order=args.order)
    weights = {"tiny": "golden weights", "smooth": f"stand-in, ell {args.ell}"}.get(
        args.preset, "random weights")
    print(f"preset {args.preset} ({weights}), "
          f"{args.device}, window {wf} frames / {ws} samples at {args.fps} fps / {rate} Hz, "
          f"{plan.count} windows, overlap {overlap} frames, {plan.frames} frames; dpm_solver "
          f"{args.steps} steps order {args.order}, gradient guidance {args.scale}; "
          f"seeds {args.seeds}")
    print(f"{'direction':<15} {'method':<18} {'agree':>7} {'seam':>6} {'joint':>8} "
          f"{'inside':>8} {'dB':>6} {'s/window':>9} {'fwd/win':>8} {'bwd/win':>8}")
    for direction in args.directions:
        cond = _condition_tensor(direction, condition(direction, plan, cfg.video_size[2]), plan,
                                 models, 1)
        gen = "audio" if direction == "video-to-audio" else "video"
        runs = [(m, c) for m in args.methods
                for c in (args.contexts if m == "autoregressive" else [0.0])]
        for method, context in runs:
            rows = []
            for seed in args.seeds:
                kw = {"guidance": "gradient", "scale": args.scale, "seed": seed,
                          "video_shape": cfg.video_size, "audio_shape": cfg.audio_size}
                start = time.perf_counter()
                if method == "fused":
                    out = fused(net, plan, cond, direction, spec,  # type: ignore[arg-type]
                                max_batch=args.max_batch, **kw)
                else:
                    out = autoregressive(net, plan, cond, direction, spec,  # type: ignore[arg-type]
                                         context_fraction=context,
                                         **kw)
                if models.device.type == "cuda":
                    torch.cuda.synchronize()
                secs = time.perf_counter() - start
                clip = getattr(out, gen)
                rows.append((agreement(plan, out.pieces, clip, gen), *seam(plan, clip, gen),
                             secs / plan.count, out.nfe["forward"] / plan.count,
                             out.nfe["backward"] / plan.count))
            m = [statistics.mean(col) for col in zip(*rows, strict=False)]
            label = f"{method} {context:g}" if method == "autoregressive" else method
            agree = "given" if method == "autoregressive" and context == 1 else f"{m[0]:7.3f}"
            print(f"{direction:<15} {label:<18} {agree:>7} {m[1]:6.2f} {m[2]:8.4f} "
                  f"{m[3]:8.4f} {m[4]:6.2f} {m[5]:9.2f} {m[6]:8.1f} {m[7]:8.1f}", flush=True)


if __name__ == "__main__":
    main()

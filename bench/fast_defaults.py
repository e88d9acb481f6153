"""Fast sampler candidates against the official settings, on the same weights and the same x_T.

    python3 bench/fast_defaults.py                      # all cases, all candidates
    python3 bench/fast_defaults.py --cases standin

Per case and candidate: NFE and the relative RMS difference to the official settings' sample
(base: DPM-Solver 20 steps order 3 singlestep; SR: DDIM 25), ``rms(cand - official) /
rms(official)``, worst of video and audio. The reference "converged" is a 100-step DPM-Solver++
multistep order-3 run (for SR with ``clip_x0``: the official DDIM clips x0 to [-1, 1] every step,
so the ODE it discretises is the clipped one); the column "vs converged" is each sampler's own
discretisation error, the scale to read "vs official" against (the official DDIM-25 SR is itself
not converged, so a more accurate SR solver differs from it by about DDIM-25's own error, while
DDIM-15 shares DDIM-25's first-order bias). SR candidates marked ``clip`` clip x0 like DDIM.

Cases: ``standin`` (the analytic denoisers of ``tests/model/standins.py``: a known Gaussian
posterior, so the ODE is smooth like a trained model's), ``golden`` (the tiny golden-test
weights) and ``random`` (the randomly initialised ``tiny`` preset).

What this can and cannot show: with untrained weights the "sample" is the ODE solution of an
arbitrary eps-network; agreement says the fast solver integrates the same ODE about as
accurately as the official one, not that trained-model samples look the same (perceptual
quality, FVD/FAD) - that needs the real checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import build_sr, build_unet
from model.checkpoint import load
from model.config import SRConfig, UNetConfig
from model.samplers import SamplerSpec, count_nfe, sample_joint, sample_sr
from model.state import AV
from worker.sampling import preset_specs

FAST_BASE, FAST_SR = preset_specs("fast")
OFFICIAL_BASE, OFFICIAL_SR = preset_specs("official")

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
CONVERGED = SamplerSpec(name="dpm_solver++", steps=100, order=3, method="multistep")
# SR: the official DDIM clips x0 to [-1, 1] at every step, so the ODE it discretises is the
# clipped one; its converged solve clips too.
CONVERGED_SR = SamplerSpec(name="dpm_solver++", steps=100, order=3, method="multistep",
                           clip_x0=True)
BASE_CANDIDATES: dict[str, SamplerSpec] = {
    f"{name} {method} o{order} {steps}": SamplerSpec(name=name, steps=steps, order=order,
                                                      method=method)
    for name, method, order, steps in [
        ("dpm_solver++", "multistep", 2, 10), ("dpm_solver++", "multistep", 2, 15),
        ("dpm_solver++", "multistep", 3, 10), ("dpm_solver++", "multistep", 3, 12),
        ("dpm_solver++", "multistep", 3, 15), ("dpm_solver", "multistep", 3, 15),
        ("dpm_solver", "singlestep", 3, 15),
    ]
}
SR_CANDIDATES: dict[str, SamplerSpec] = {
    "ddim 15": SamplerSpec(name="ddim", steps=15),
    "ddim 10": SamplerSpec(name="ddim", steps=10),
    "dpm_solver++ ms o2 10": SamplerSpec(name="dpm_solver++", steps=10, order=2,
                                         method="multistep"),
    **{f"dpm_solver++ ms o{o} {n} clip": SamplerSpec(name="dpm_solver++", steps=n, order=o,
                                                     method="multistep", clip_x0=True)
       for o in (2, 3) for n in (10, 12, 15)},
    **{f"dpm_solver++ ms o3 {n} clip tquad": SamplerSpec(
        name="dpm_solver++", steps=n, order=3, method="multistep", skip_type="time_quadratic",
        clip_x0=True) for n in (10, 12, 15)},
}
JointEps = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
SREps = Callable[..., Tensor]


def _standins() -> tuple[JointEps, SREps]:
    sys.path.insert(0, str(ROOT))
    from tests.helpers.standins import joint_standin, sr_standin

    return joint_standin, sr_standin


def networks(case: str) -> tuple[JointEps, SREps, UNetConfig, SRConfig]:
    """``(joint eps, SR eps, unet config, SR config)`` of a case (see the module docstring)."""
    unet_cfg, sr_cfg = UNetConfig.preset("tiny"), SRConfig.preset("tiny")
    if case == "standin":
        joint, sr = _standins()
        return joint, sr, unet_cfg, sr_cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if case == "golden":
            g = torch.load(GOLDEN / "unet_tiny.pt", weights_only=False)
            unet_cfg = UNetConfig.from_official_flags(**g["script_flags"])
            unet = build_unet(unet_cfg)
            load(unet, g["state_dict"])
            gs = torch.load(GOLDEN / "sr_tiny.pt", weights_only=False)
            sr_net = build_sr(sr_cfg)
            load(sr_net, gs["state_dict"])
        elif case == "random":
            unet, sr_net = build_unet(unet_cfg), build_sr(sr_cfg)
        else:
            raise ValueError(f"unknown case {case!r}; expected standin, golden or random")
    c_v, c_a = unet_cfg.video_size[1], unet_cfg.audio_size[0]
    shifts = [0] * unet.num_cross_calls  # no random window shift: same network for every run

    def joint_eps(video: Tensor, audio: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        v, a = unet(video, audio, t.float(), window_shifts=shifts)
        return v[:, :, :c_v].float(), a[:, :c_a].float()

    def sr_eps(x: Tensor, t: Tensor, *, low_res: Tensor) -> Tensor:
        return sr_net(x, t.float(), low_res).float()

    return joint_eps, sr_eps, unet_cfg, sr_cfg


def _rel(a: Tensor, ref: Tensor | None) -> float:
    if ref is None:
        return float("nan")
    return float((a - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


def _worst(a: AV, ref: AV | None) -> float:
    if ref is None:
        return float("nan")
    return max(_rel(a.video, ref.video), _rel(a.audio, ref.audio))


Row = tuple[int, float, float]


def base_errors(case: str, specs: dict[str, SamplerSpec], converged: bool = True,
                batch: int = 2) -> dict[str, Row]:
    """``{label: (NFE, rel. RMS difference to the official sample, to the converged one)}``
    (worst of video and audio; batch 2). ``converged=False`` skips the 100-step run (nan)."""
    joint, _, cfg, _ = networks(case)
    g = torch.Generator().manual_seed(0)
    x_T = AV(torch.randn(batch, *cfg.video_size, generator=g),
             torch.randn(batch, *cfg.audio_size, generator=g))
    with torch.inference_mode():
        ref = sample_joint(joint, x_T, OFFICIAL_BASE)
        conv = sample_joint(joint, x_T, CONVERGED) if converged else None
        out: dict[str, Row] = {}
        for label, spec in {"official": OFFICIAL_BASE, **specs}.items():
            if label == "official":
                out[label] = (OFFICIAL_BASE.steps, 0.0, _worst(ref, conv))
                continue
            counter = count_nfe(joint)
            got = sample_joint(counter, x_T, spec)
            out[label] = (counter.forward, _worst(got, ref), _worst(got, conv))
    return out


def sr_errors(case: str, specs: dict[str, SamplerSpec], converged: bool = True,
              frames: int = 4) -> dict[str, Row]:
    """Same for SR (``frames`` frames; low-res input = a fixed random image in [-1, 1])."""
    _, sr, _, cfg = networks(case)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(frames, 3, cfg.small_size, cfg.small_size, generator=g) * 2 - 1
    x_T = torch.randn(frames, 3, cfg.large_size, cfg.large_size, generator=g)
    with torch.inference_mode():
        ref = sample_sr(sr, x_T, OFFICIAL_SR, low_res=low)
        conv = sample_sr(sr, x_T, CONVERGED_SR, low_res=low) if converged else None
        out: dict[str, Row] = {}
        for label, spec in {"official": OFFICIAL_SR, **specs}.items():
            if label == "official":
                out[label] = (OFFICIAL_SR.steps, 0.0, _rel(ref, conv))
                continue
            counter = count_nfe(sr)
            got = sample_sr(counter, x_T, spec, low_res=low)
            out[label] = (counter.forward, _rel(got, ref), _rel(got, conv))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default="standin,golden,random")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="only the chosen fast defaults")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = {"fast default": FAST_BASE} if args.quick else BASE_CANDIDATES
    srs = {"fast default": FAST_SR} if args.quick else SR_CANDIDATES
    print(f"{'case':<8} {'stage':<5} {'candidate':<34} {'NFE':>4} {'vs official':>12} "
          f"{'vs converged':>13}")
    for case in args.cases.split(","):
        for stage, fn, specs in (("base", base_errors, base), ("sr", sr_errors, srs)):
            for label, (nfe, err, err_c) in fn(case, specs).items():
                print(f"{case:<8} {stage:<5} {label:<34} {nfe:>4} {err:>12.2e} {err_c:>13.2e}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

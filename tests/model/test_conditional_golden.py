"""Golden f cases: the official 1000-step conditional DDPM loop (replacement and gradient).

Replacement and the loss-scale-1 gradient loops are compared end to end at 1e-5 (perturbation
sensitivity <= 1e-6, SAMPLING.md 10.4). The official fp16 loss-scale loops (2**20) are chaotic
end to end, so they are compared (i) on snapshots up to step 400 and (ii) teacher-forced single
steps (snapshot k-1 + the bank noise of step k -> snapshot k), both at 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.conditional import official_conditional_loop
from model.denoiser import joint_denoiser
from model.samplers import SamplerSpec, count_nfe, sample_conditional
from model.schedule import DiscreteSchedule
from model.state import AV
from tests.helpers.standins import joint_standin

TOL = 1e-5

CASES = [
    "f_V2A_replacement", "f_V2A_gradient_fp16scale", "f_V2A_gradient_noscale",
    "f_A2V_replacement", "f_A2V_gradient_fp16scale", "f_A2V_gradient_noscale",
]


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict:
    return torch.load(golden_dir / "sampling.pt", weights_only=True)["cases"]


def _maxdiff(a: AV, b: dict) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, AV(**b), strict=False))


def _args(case: dict) -> dict:
    st = case["settings"]
    return dict(
        direction="video-to-audio" if st["condition"] == "video" else "audio-to-video",
        guidance="replacement" if st["class_scale"] == 0 else "gradient",
        scale=st["class_scale"],
        loss_scale=st["loss_scale"],
    )


@pytest.mark.parametrize("key", CASES)
def test_official_conditional_loop(golden: dict, key: str) -> None:
    case, bank = golden[key], golden["_bank"]
    args = _args(case)
    cond_name = case["settings"]["condition"]
    snaps: dict[int, AV] = {}
    first_t: list[torch.Tensor] = []

    def net(v, a, t):
        if len(first_t) < 3:
            first_t.append(t)
        return joint_standin(v, a, t)

    counter = count_nfe(net)
    out = sample_conditional(
        counter,
        AV(**bank["x_T"]),
        SamplerSpec(name="ddpm", steps=1000, official_compat=True),
        condition=bank["condition"][cond_name],
        noise_fn=lambda k, like: AV(bank["noise_video"][k], bank["noise_audio"][k]),
        callback=lambda i, n, x: (
            snaps.__setitem__(i - 1, x) if i - 1 in case["snapshots"] else None
        ),
        **args,
    )
    assert counter.forward == 1000
    assert counter.backward == (1000 if args["guidance"] == "gradient" else 0)
    assert torch.equal(torch.stack(first_t), case["model_t_input_first"])
    chaotic = key.endswith("fp16scale")
    for k, ref in case["snapshots"].items():
        if not chaotic or k <= 400:
            assert _maxdiff(snaps[k], ref) <= TOL, f"snapshot {k}"
    if not chaotic:
        assert _maxdiff(out, case["out"]) <= TOL


@pytest.mark.parametrize("key", [k for k in CASES if k.endswith("fp16scale")])
def test_chaotic_loops_teacher_forced(golden: dict, key: str) -> None:
    case, bank = golden[key], golden["_bank"]
    args = _args(case)
    sched = DiscreteSchedule.linear()
    x_T = AV(**bank["x_T"])
    cond = bank["condition"][case["settings"]["condition"]]
    checked = 0
    for k in sorted(case["snapshots"]):
        if k - 1 not in case["snapshots"]:
            continue
        got = official_conditional_loop(
            joint_denoiser(joint_standin),
            sched,
            x_T,
            condition=cond,
            noise_fn=lambda s, like: AV(bank["noise_video"][s], bank["noise_audio"][s]),
            official_output=True,
            start=AV(**case["snapshots"][k - 1]),
            first_step=k,
            stop_step=k + 1,
            **args,
        )
        assert _maxdiff(got, case["snapshots"][k]) <= TOL, f"step {k}"
        checked += 1
    assert checked >= 10


def test_default_output_returns_clean_condition(golden: dict) -> None:
    """Without official_compat the generated modality is the same and the condition is exact."""
    case, bank = golden["f_V2A_replacement"], golden["_bank"]
    out = sample_conditional(
        joint_standin,
        AV(**bank["x_T"]),
        SamplerSpec(name="ddpm", steps=1000),
        condition=bank["condition"]["video"],
        direction="video-to-audio",
        guidance="replacement",
        noise_fn=lambda k, like: AV(bank["noise_video"][k], bank["noise_audio"][k]),
    )
    assert torch.equal(out.video, bank["condition"]["video"])
    assert float((out.audio - case["out"]["audio"]).abs().max()) <= TOL

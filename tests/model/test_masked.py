"""model/masked.py: with the masks of plain video-to-audio / audio-to-video (one window, the
condition fully given) the masked sampler equals today's sample_conditional bit for bit, for both
directions and every conditional sampler family; with partial time masks the given parts are
kept and do steer the rest."""

from __future__ import annotations

import pytest
import torch

from model import build_unet
from model.config import UNetConfig
from model.masked import direction_masks, sample_masked
from model.samplers import SamplerSpec, count_nfe, sample_conditional
from model.state import AV
from tests.helpers.standins import joint_standin

B = 2
CONFIGS = [
    # (label, spec, guidance, scale, loss_scale)
    ("dpm_solver-20 gradient (fast default)", SamplerSpec(), "gradient", 3.0, 1.0),
    ("dpm_solver++ multistep replacement", SamplerSpec(name="dpm_solver++", order=2,
                                                       method="multistep", steps=6),
     "replacement", 0.0, 1.0),
    ("ddim-8 eta=1 gradient", SamplerSpec(name="ddim", steps=8, eta=1.0), "gradient", 2.0, 1.0),
    ("ddpm-1000 replacement (official loop)", SamplerSpec(name="ddpm", steps=1000),
     "replacement", 0.0, 1.0),
    ("ddpm-20 gradient fp16 loss scale", SamplerSpec(name="ddpm", steps=20), "gradient", 3.0,
     2.0**20),
]


def _inputs(direction: str) -> tuple[AV, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x_T = AV(torch.randn((B, 4, 3, 4, 4), generator=g), torch.randn((B, 1, 64), generator=g))
    if direction == "video-to-audio":
        cond = torch.rand((B, 4, 3, 4, 4), generator=g) * 1.6 - 0.8
    else:
        cond = torch.sin(torch.linspace(0, 9, 64)).expand(B, 1, 64) * 0.6
    return x_T, cond.contiguous()


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
@pytest.mark.parametrize("label,spec,guidance,scale,loss_scale", CONFIGS,
                         ids=[c[0] for c in CONFIGS])
def test_full_mask_equals_todays_conditional(direction, label, spec, guidance, scale,
                                             loss_scale) -> None:
    x_T, cond = _inputs(direction)
    ref_net, net = count_nfe(joint_standin), count_nfe(joint_standin)
    ref = sample_conditional(ref_net, x_T, spec, condition=cond, direction=direction,
                             guidance=guidance, scale=scale, loss_scale=loss_scale,
                             generator=torch.Generator().manual_seed(9))
    c = "video" if direction == "video-to-audio" else "audio"
    known = x_T.replace(c, cond).map(torch.clone)
    known = known.replace("audio" if c == "video" else "video",
                          torch.full_like(getattr(x_T, "audio" if c == "video" else "video"), 7.0))
    out = sample_masked(net, x_T, spec, known=known, mask=direction_masks(direction, x_T),
                        guidance=guidance, scale=scale, loss_scale=loss_scale,
                        generator=torch.Generator().manual_seed(9))
    assert (net.forward, net.backward) == (ref_net.forward, ref_net.backward)
    assert torch.equal(out.video, ref.video) and torch.equal(out.audio, ref.audio)


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
@pytest.mark.parametrize("spec", [SamplerSpec(steps=6, order=2), SamplerSpec(name="ddpm",
                                                                               steps=10)])
def test_full_mask_equals_todays_conditional_with_v_prediction(direction, spec) -> None:
    """A v-predicting network (the demo model's kind): the masked sampler converts it exactly
    as sample_conditional does (and not as eps: that would differ)."""
    x_T, cond = _inputs(direction)
    c = "video" if direction == "video-to-audio" else "audio"
    kw = {"guidance": "gradient", "scale": 2.0}
    ref = sample_conditional(joint_standin, x_T, spec, condition=cond, direction=direction,
                             generator=torch.Generator().manual_seed(9), prediction="v", **kw)
    known = x_T.replace(c, cond)
    out = sample_masked(joint_standin, x_T, spec, known=known,
                        mask=direction_masks(direction, x_T),
                        generator=torch.Generator().manual_seed(9), prediction="v", **kw)
    as_eps = sample_masked(joint_standin, x_T, spec, known=known,
                           mask=direction_masks(direction, x_T),
                           generator=torch.Generator().manual_seed(9), **kw)
    assert torch.equal(out.video, ref.video) and torch.equal(out.audio, ref.audio)
    g = "audio" if c == "video" else "video"
    assert not torch.allclose(getattr(as_eps, g), getattr(ref, g))


def test_full_mask_equals_todays_conditional_on_a_tiny_unet() -> None:
    """A real (random-weight) coupled U-Net with random window shifts, both directions."""
    torch.manual_seed(0)
    cfg = UNetConfig.preset("tiny")
    unet = build_unet(cfg).eval()

    def eps_fn(gen: torch.Generator):
        def f(v: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return unet(v, a, t.float(), generator=gen)
        return f

    spec = SamplerSpec(steps=3, order=2)
    g = torch.Generator().manual_seed(1)
    x_T = AV(torch.randn((1, *cfg.video_size), generator=g),
             torch.randn((1, *cfg.audio_size), generator=g))
    for direction, c in (("video-to-audio", "video"), ("audio-to-video", "audio")):
        cond = torch.rand(getattr(x_T, c).shape, generator=g) - 0.5
        ref = sample_conditional(eps_fn(torch.Generator().manual_seed(3)), x_T, spec,
                                 condition=cond, direction=direction)
        out = sample_masked(eps_fn(torch.Generator().manual_seed(3)), x_T, spec,
                            known=x_T.replace(c, cond), mask=direction_masks(direction, x_T))
        assert torch.equal(out.video, ref.video) and torch.equal(out.audio, ref.audio)


@pytest.mark.parametrize("spec", [SamplerSpec(steps=6, order=2), SamplerSpec(name="ddpm",
                                                                               steps=10)])
def test_partial_time_mask_keeps_the_given_part_and_steers_the_rest(spec) -> None:
    """Video fully given, the first 16 audio samples given: those come back unchanged, and
    the given audio moves the generated audio. The stand-in's video mean follows the mean audio,
    so raising the given audio raises the predicted video and the guidance lowers the free audio
    to keep the video reconstruction on the condition (measured -0.035 DPM-Solver, -0.011
    DDPM-10). Same seeds: a sampler that ignored the given audio would move it by exactly 0."""
    x_T, cond = _inputs("video-to-audio")
    mask = AV(torch.ones((B, 4, 1, 1, 1), dtype=torch.bool),
              (torch.arange(64) < 16).reshape(1, 1, 64).expand(B, 1, 64))
    outs = []
    for level in (-0.8, 0.8):
        known = AV(cond, torch.full((B, 1, 64), level))
        out = sample_masked(joint_standin, x_T, spec, known=known, mask=mask, guidance="gradient",
                            scale=3.0, generator=torch.Generator().manual_seed(2))
        assert torch.equal(out.video, cond)
        assert torch.equal(out.audio[..., :16], known.audio[..., :16])
        outs.append(out.audio[..., 16:])
    moved = float((outs[1] - outs[0]).mean())
    assert moved < -0.005, moved


def test_bad_masks_say_what_is_expected() -> None:
    x_T, cond = _inputs("video-to-audio")
    known = x_T.replace("video", cond)
    with pytest.raises(ValueError, match="bool tensor"):
        sample_masked(joint_standin, x_T, SamplerSpec(steps=2), known=known,
                      mask=AV(torch.ones((B, 4, 1, 1, 1)), torch.zeros((B, 1, 64),
                                                                       dtype=torch.bool)))
    with pytest.raises(ValueError, match=r"known\.audio"):
        sample_masked(joint_standin, x_T, SamplerSpec(steps=2),
                      known=AV(cond, torch.zeros(B, 1, 32)),
                      mask=direction_masks("video-to-audio", x_T))

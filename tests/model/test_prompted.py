"""Prompt guidance (model/prompted.py) on the analytic stand-in with an analytic aligner.

The toy aligner scores a clip by a weighted mean of its clean estimates (``"up"``: +video mean
+ audio mean, ``"down"``: the negative), so its gradient is known in closed form and a guided
sample must move its means in the prompt's direction. Everything runs on tiny shapes (seconds).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from model.conditional import conditional_denoiser
from model.denoiser import joint_denoiser
from model.prompted import PromptGuidance, prompt_denoiser, x0_of
from model.samplers import SamplerSpec, count_nfe, sample_conditional, sample_joint
from model.state import AV
from tests.helpers.standins import joint_standin

AUDIO_SCALE = 2.0
DDIM = SamplerSpec(name="ddim", steps=10)
SPECS = [DDIM, SamplerSpec(), SamplerSpec(name="dpm_solver++", steps=10, order=2,
                                          method="multistep"),
         SamplerSpec(name="ddpm", steps=10)]


class MeanAligner:
    """``score_b = sign * (mean(video_b) + mean(audio_b))`` (audio: the waveform)."""

    name = "toy"
    default_scale = 1.0

    def check_prompt(self, prompt: str) -> str:
        key = prompt.strip().lower()
        if key not in ("up", "down"):
            raise ValueError("toy prompts: up, down")
        return key

    def score(self, video: Tensor, audio: Tensor, prompt: str) -> Tensor:
        sign = 1.0 if prompt == "up" else -1.0
        return sign * (video.flatten(1).mean(1) + audio.flatten(1).mean(1))


def _guide(scale: float, prompt: str = "up") -> PromptGuidance:
    return PromptGuidance(aligner=MeanAligner(), prompt=prompt, scale=scale,
                          audio_scale=AUDIO_SCALE)


def _start(n: int = 4, seed: int = 0) -> AV:
    g = torch.Generator().manual_seed(seed)
    return AV(torch.randn((n, 2, 3, 4, 4), generator=g), torch.randn((n, 1, 64), generator=g))


def _means(x: AV) -> Tensor:
    return torch.stack([x.video.flatten(1).mean(1), x.audio.flatten(1).mean(1)])


def test_one_evaluation_adds_minus_scale_sigma_grad() -> None:
    """eps_m' = eps_m - w * sigma * d(score)/dx_m, the score of the clean estimates (audio /
    audio_scale): checked against autograd of the formula written out."""
    x = _start(3)
    t = torch.full((3,), 500)
    alpha, sigma = torch.full((3,), 0.6), torch.full((3,), 0.8)
    base = joint_denoiser(joint_standin)
    eps, _ = base(x, t, alpha, sigma)
    guided, _ = prompt_denoiser(base, _guide(2.5))(x, t, alpha, sigma)
    leaves = AV(x.video.clone().requires_grad_(True), x.audio.clone().requires_grad_(True))
    e, _ = base(leaves, t, alpha, sigma)
    assert isinstance(eps, AV) and isinstance(guided, AV) and isinstance(e, AV)
    s = MeanAligner().score(x0_of(leaves.video, e.video, alpha, sigma),
                            x0_of(leaves.audio, e.audio, alpha, sigma) / AUDIO_SCALE, "up")
    gv, ga = torch.autograd.grad(s.sum(), [leaves.video, leaves.audio])
    torch.testing.assert_close(guided.video, eps.video - 2.5 * 0.8 * gv)
    torch.testing.assert_close(guided.audio, eps.audio - 2.5 * 0.8 * ga)
    assert (guided.video - eps.video).abs().max() > 1e-3  # the guidance did something


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_guided_sample_raises_the_score(spec: SamplerSpec) -> None:
    x_T = _start(8)
    g = torch.Generator
    plain = sample_joint(joint_standin, x_T, spec, generator=g().manual_seed(1))
    up = sample_joint(joint_standin, x_T, spec, generator=g().manual_seed(1), prompt=_guide(3.0))
    down = sample_joint(joint_standin, x_T, spec, generator=g().manual_seed(1),
                        prompt=_guide(3.0, "down"))
    # every sample, both modalities: up > plain > down (the stand-in's per-sample means are
    # ~0.1 apart between samples; the guidance moves them by ~0.1-0.5 at this scale)
    assert (_means(up) > _means(plain) + 0.02).all(), (_means(up), _means(plain))
    assert (_means(down) < _means(plain) - 0.02).all()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_scale_zero_is_unguided_bit_for_bit(spec: SamplerSpec) -> None:
    x_T = _start(3)
    g = torch.Generator
    plain = sample_joint(joint_standin, x_T, spec, generator=g().manual_seed(1))
    zero = sample_joint(joint_standin, x_T, spec, generator=g().manual_seed(1), prompt=_guide(0))
    assert torch.equal(plain.video, zero.video) and torch.equal(plain.audio, zero.audio)
    cond = torch.rand((3, 2, 3, 4, 4), generator=g().manual_seed(5)) - 0.5
    kw = dict(condition=cond, direction="video-to-audio", generator=g().manual_seed(1))
    a = sample_conditional(joint_standin, x_T, spec, **kw)  # type: ignore[arg-type]
    kw["generator"] = g().manual_seed(1)
    b = sample_conditional(joint_standin, x_T, spec, prompt=_guide(0), **kw)  # type: ignore[arg-type]
    assert torch.equal(a.audio, b.audio)


def test_batch_independence() -> None:
    """A sample's output does not depend on its batchmates (the gradient of a SUM of
    per-sample scores is per-sample)."""
    x_T = _start(4)
    both = sample_joint(joint_standin, x_T, DDIM, prompt=_guide(3.0))
    other = AV(torch.cat([x_T.video[:1], -x_T.video[1:]]), torch.cat([x_T.audio[:1],
                                                                       x_T.audio[1:] * 0.5]))
    mixed = sample_joint(joint_standin, other, DDIM, prompt=_guide(3.0))
    alone = sample_joint(joint_standin, AV(x_T.video[:1], x_T.audio[:1]), DDIM,
                         prompt=_guide(3.0))
    torch.testing.assert_close(both.video[:1], alone.video, atol=1e-6, rtol=0)
    torch.testing.assert_close(mixed.video[:1], alone.video, atol=1e-6, rtol=0)
    torch.testing.assert_close(mixed.audio[:1], alone.audio, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spec,evals", [(DDIM, 10), (SamplerSpec(), 20),
                                        (SamplerSpec(name="ddpm", steps=10), 10)],
                         ids=["ddim", "dpm_solver", "ddpm"])
def test_one_backward_per_evaluation(spec: SamplerSpec, evals: int) -> None:
    counter = count_nfe(joint_standin)
    sample_joint(counter, _start(2), spec, prompt=_guide(1.0))
    assert (counter.forward, counter.backward) == (evals, evals)
    plain = count_nfe(joint_standin)
    sample_joint(plain, _start(2), spec)
    assert (plain.forward, plain.backward) == (evals, 0)


@pytest.mark.parametrize("guidance", ["gradient", "replacement"])
@pytest.mark.parametrize("spec", [DDIM, SamplerSpec(name="ddpm", steps=10)], ids=["ddim", "ddpm"])
def test_conditional_with_prompt(guidance: str, spec: SamplerSpec) -> None:
    """video-to-audio with a prompt: the condition comes back unchanged, the generated audio
    moves with the prompt, and it costs one backward pass per evaluation (shared with the
    reconstruction guidance)."""
    x_T = _start(6)
    cond = torch.rand((6, 2, 3, 4, 4), generator=torch.Generator().manual_seed(5)) - 0.5
    out = {}
    for name, prompt in (("plain", None), ("up", _guide(3.0)), ("down", _guide(3.0, "down"))):
        counter = count_nfe(joint_standin)
        out[name] = sample_conditional(
            counter, x_T, spec, condition=cond, direction="video-to-audio",
            guidance=guidance, generator=torch.Generator().manual_seed(1),  # type: ignore[arg-type]
            prompt=prompt)
        assert torch.equal(out[name].video, cond)
        steps = 10
        grads = 0 if (name == "plain" and guidance == "replacement") else steps
        assert (counter.forward, counter.backward) == (steps, grads)
    mean = {k: v.audio.flatten(1).mean(1) for k, v in out.items()}
    # The stand-in pins the audio mean to the condition (mu_a = 0.5 tanh(4 m_v)), so the prompt
    # moves it little: measured 0.0025-0.0042 per sample at scale 3 for every case here.
    assert (mean["up"] > mean["plain"] + 0.001).all(), mean
    assert (mean["down"] < mean["plain"] - 0.001).all(), mean


def test_combined_gradient_is_the_sum_of_both() -> None:
    """The one backward pass of a conditional + prompted evaluation gives exactly the
    reconstruction correction plus the prompt correction (up to float rounding)."""
    x = _start(3)
    t = torch.full((3,), 300)
    alpha, sigma = torch.full((3,), 0.7), torch.full((3,), 0.714)
    cond, z_c = x.video * 0.3, torch.randn_like(x.video)
    base = joint_denoiser(joint_standin)
    kw = dict(condition=cond, z_c=z_c, direction="video-to-audio")

    def run(guidance: str, scale: float, prompt: PromptGuidance | None) -> Tensor:
        d = conditional_denoiser(base, guidance=guidance, scale=scale, prompt=prompt,  # type: ignore[arg-type]
                                 **kw)  # type: ignore[arg-type]
        eps, _ = d(x, t, alpha, sigma)
        assert isinstance(eps, AV)
        return eps.audio

    plain = run("replacement", 0.0, None)
    recon = run("gradient", 3.0, None) - plain
    prompt = run("replacement", 0.0, _guide(2.0)) - plain
    both = run("gradient", 3.0, _guide(2.0)) - plain
    assert recon.abs().max() > 1e-3 and prompt.abs().max() > 1e-3
    torch.testing.assert_close(both, recon + prompt, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
@pytest.mark.parametrize("method", ["autoregressive", "fused"])
def test_whole_clip_with_prompt(direction: str, method: str) -> None:
    """A whole clip (9 windows of the stand-in) takes a prompt: the generated modality moves
    with it in every window, one backward pass per window evaluation, the condition kept."""
    from model.config import UNetConfig
    from model.pipeline import LoadedModels
    from model.whole_clip import generate_whole_clip

    cfg = UNetConfig.preset("tiny").with_(video_size=(4, 3, 4, 4), audio_size=(1, 64),
                                          channel_mult=(1, 1), cross_attention_resolutions=(),
                                          cross_attention_windows=(), audio_scale=AUDIO_SCALE)
    models = LoadedModels("standin", torch.nn.Identity(), cfg, None, None, torch.device("cpu"),
                          "fp32", True, aligner=MeanAligner())
    g = torch.Generator().manual_seed(0)
    cond = (torch.randint(0, 256, (20, 4, 4, 3), generator=g).to(torch.uint8)
            if direction == "video-to-audio" else torch.rand(320, generator=g) - 0.5)
    out = {}
    for prompt in (None, "up", "down"):
        out[prompt] = generate_whole_clip(
            models, direction=direction, condition=cond, duration_s=2.0,  # type: ignore[arg-type]
            fps=10, sample_rate=160, seed=3, sampler=SamplerSpec(name="ddim", steps=4),
            overlap_frames=2, method=method, max_batch=4,  # type: ignore[arg-type]
            prompt=prompt, prompt_scale=3.0,
            net=lambda v, a, t, gens: joint_standin(v, a, t))
        assert out[prompt].windows == 9
        assert out[prompt].nfe["backward"] == out[prompt].nfe["forward"] == 9 * 4
    gen = "audio" if direction == "video-to-audio" else "video"
    # mean per frame (video [1, 20, 3, 4, 4]) or per frame's 16 samples (audio [1, 320])
    part = {p: getattr(o, gen)[0].reshape(20, -1).mean(1) for p, o in out.items()}
    # measured: every frame moves by >= 0.0016 each way (both methods and directions)
    assert (part["up"] > part[None] + 5e-4).all(), part
    assert (part["down"] < part[None] - 5e-4).all(), part
    with pytest.raises(ValueError, match="fast sampler"):
        generate_whole_clip(models, direction=direction,  # type: ignore[arg-type]
                            condition=cond, duration_s=2.0, fps=10,
                            sample_rate=160, seed=3, sampler=SamplerSpec(name="ddpm", steps=4),
                            overlap_frames=2, prompt="up",
                            net=lambda v, a, t, gens: joint_standin(v, a, t))

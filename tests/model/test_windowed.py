"""model/windowed.py and model/whole_clip.py: one window equals today's pipeline, windows agree
where they overlap, seeds, progress, cancel, batching, limits.

Geometry: the tiny preset's window is 8 frames and 2048 samples, so it is run at fps 10 and a
sample rate of 2560 Hz (the same 0.8 s in both modalities); the stand-in tests use a small
fake geometry of 4 frames of 4x4 and 64 samples (fps 10, 160 Hz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import UNetConfig
from model.pipeline import GenerationRequest, LoadedModels, generate
from model.registry import load_models
from model.samplers import SamplerSpec, SamplingCancelled
from model.whole_clip import generate_whole_clip
from tests.helpers.standins import joint_standin

FAST = SamplerSpec(name="dpm_solver", steps=2, order=1)  # 2 NFE per window


def _standin_net(v, a, t, gens):
    return joint_standin(v, a, t)


def _standin_models() -> LoadedModels:
    cfg = UNetConfig.preset("tiny").with_(video_size=(4, 3, 4, 4), audio_size=(1, 64),
                                          channel_mult=(1, 1), cross_attention_resolutions=(),
                                          cross_attention_windows=())
    return LoadedModels("standin", torch.nn.Identity(), cfg, None, None, torch.device("cpu"),
                        "fp32", True)


def _video(frames: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (1, size, size, 3), generator=g)
    ramp = (torch.arange(frames) * 255 // max(1, frames - 1)).reshape(-1, 1, 1, 1)
    return ((base + ramp) % 256).to(torch.uint8)


def _audio(samples: int, rate: int) -> torch.Tensor:
    t = torch.arange(samples) / rate
    return (0.6 * torch.sin(2 * torch.pi * 3 * t) * torch.cos(2 * torch.pi * 0.2 * t)).float()


@pytest.fixture(scope="module")
def tiny(golden_dir: Path) -> LoadedModels:
    sd = torch.load(golden_dir / "unet_tiny.pt", map_location="cpu", weights_only=False)
    return load_models("tiny", preset="tiny", checkpoint=sd["state_dict"], sr=False)


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
def test_one_window_equals_todays_pipeline(tiny: LoadedModels, direction: str) -> None:
    """A clip of exactly one window is today's V2A / A2V (same seed, same sampler, SR off)."""
    spec = SamplerSpec(name="dpm_solver", steps=3, order=2)
    if direction == "video-to-audio":
        cond = _video(8, 16)
        request = GenerationRequest(mode=direction, seed=11, base_sampler=spec,
                                    super_resolution=False, condition_video=cond.numpy())
    else:
        cond = _audio(2048, 2560)
        request = GenerationRequest(mode=direction, seed=11, base_sampler=spec,
                                    super_resolution=False, condition_audio=cond.numpy())
    ref = generate(request, tiny)
    out = generate_whole_clip(tiny, direction=direction, condition=cond, duration_s=0.8, fps=10,
                              sample_rate=2560, seed=11, sampler=spec)
    assert out.windows == 1 and out.nfe["forward"] == 3 and out.nfe["backward"] == 3
    if direction == "video-to-audio":
        assert np.array_equal(out.audio.numpy(), ref.audio)
    else:
        frames = ((out.video + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2)
        assert np.array_equal(frames.numpy(), ref.frames)


@pytest.fixture(scope="module")
def demo() -> LoadedModels:
    """The demo preset (v-prediction, audio x audio_scale, 8 frames at 8 fps, 2048 Hz) with
    random weights, or its shipped weights where model/demo/weights/ holds them."""
    from model.registry import shipped_weights

    try:
        shipped = shipped_weights("demo")
    except (FileNotFoundError, ValueError):
        shipped = None
    return load_models("demo", preset="demo", sr=False,
                       checkpoint=None if shipped is None else shipped["base"])


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
def test_one_window_of_the_demo_model_equals_todays_pipeline(demo: LoadedModels,
                                                             direction: str) -> None:
    """The demo model predicts v and sees audio x 2: a one-window whole clip runs the network
    exactly as today's single-window V2A / A2V does (same seed, sampler, SR off)."""
    cfg = demo.unet_cfg
    assert cfg.prediction == "v" and cfg.audio_scale != 1.0  # what this test is about
    frames, samples = cfg.video_size[0], cfg.audio_size[1]
    spec = SamplerSpec(name="dpm_solver", steps=3, order=2)
    if direction == "video-to-audio":
        cond = _video(frames, cfg.video_size[2])
        request = GenerationRequest(mode=direction, seed=7, base_sampler=spec,
                                    super_resolution=False, condition_video=cond.numpy())
    else:
        cond = _audio(samples, cfg.sample_rate)
        request = GenerationRequest(mode=direction, seed=7, base_sampler=spec,
                                    super_resolution=False, condition_audio=cond.numpy())
    ref = generate(request, demo)
    out = generate_whole_clip(demo, direction=direction, condition=cond,
                              duration_s=cfg.seconds, fps=cfg.fps, sample_rate=cfg.sample_rate,
                              seed=7, sampler=spec)
    assert out.windows == 1 and out.nfe["forward"] == 3
    if direction == "video-to-audio":
        assert np.array_equal(out.audio.numpy(), ref.audio)
    else:
        assert np.array_equal(out.audio.numpy(), ref.audio)  # the condition, unscaled
        frames_out = ((out.video + 1) * 127.5).clamp(0, 255).to(torch.uint8)
        assert np.array_equal(frames_out.permute(0, 1, 3, 4, 2).numpy(), ref.frames)


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
@pytest.mark.parametrize("method", ["autoregressive", "fused"])
def test_windows_take_v_and_audio_scale_from_the_config(direction: str, method: str) -> None:
    """A v-predicting stand-in with audio_scale 2 whose clean prediction is exact (video 0.3,
    audio 0.6 in the network's domain): DDIM then lands on it, so the clip is video 0.3 and
    audio 0.3 -- read as eps, or without the scale, it would not be."""
    from model.schedule import DiscreteSchedule

    models = _standin_models()
    models = LoadedModels("standin", torch.nn.Identity(),
                          models.unet_cfg.with_(prediction="v", audio_scale=2.0), None, None,
                          torch.device("cpu"), "fp32", True)
    acp = torch.tensor(DiscreteSchedule.linear(1000).alphas_cumprod, dtype=torch.float32)

    def v_net(v, a, t, gens):
        out = []
        for x, x0 in ((v, 0.3), (a, 0.6)):
            al = acp[t.long()].sqrt().reshape(-1, *[1] * (x.dim() - 1))
            si = (1 - acp[t.long()]).sqrt().reshape(-1, *[1] * (x.dim() - 1))
            out.append((al * x - x0) / si)  # v = alpha*eps - sigma*x0 at x = alpha*x0 + sigma*eps
        return out[0], out[1]

    cond = _video(20, 4) if direction == "video-to-audio" else _audio(320, 160)
    out = generate_whole_clip(models, direction=direction, condition=cond, duration_s=2.0,
                              fps=10, sample_rate=160, seed=1,
                              sampler=SamplerSpec(name="ddim", steps=2), guidance="replacement",
                              overlap_frames=2, method=method, net=v_net)
    assert out.windows == 9
    if direction == "video-to-audio":
        assert torch.allclose(out.audio, torch.full_like(out.audio, 0.3), atol=1e-4)
    else:
        assert torch.allclose(out.video, torch.full_like(out.video, 0.3), atol=1e-4)
        assert torch.equal(out.audio[0], cond)


def test_fused_batches_of_windows_equal_one_window_per_call(tiny: LoadedModels) -> None:
    """The memory bound changes nothing but float rounding: the tiny U-Net with every window's
    shifts from its own generator (shift_groups), 2 windows per call vs 1."""
    kw = {"direction": "audio-to-video", "condition": _audio(3584, 2560), "duration_s": 1.4,
          "fps": 10, "sample_rate": 2560, "seed": 3, "sampler": SamplerSpec(name="ddim", steps=2),
          "guidance": "replacement", "overlap_frames": 2, "method": "fused"}
    one = generate_whole_clip(tiny, max_batch=1, **kw)
    two = generate_whole_clip(tiny, max_batch=2, **kw)
    assert one.windows == 2 and (one.nfe["calls"], two.nfe["calls"]) == (4, 2)
    assert torch.allclose(one.video, two.video, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("direction", ["video-to-audio", "audio-to-video"])
@pytest.mark.parametrize("method", ["autoregressive", "fused"])
def test_whole_clip_shapes_condition_and_overlap_agreement(direction: str, method: str) -> None:
    models = _standin_models()
    # 4-frame windows, overlap 2: 2.0 s = 20 frames -> 9 windows; 2.05 s -> 21 frames, 10 windows
    for duration, frames, windows in ((2.0, 20, 9), (2.1, 21, 10)):
        samples = frames * 16
        cond = _video(frames, 4) if direction == "video-to-audio" else _audio(samples, 160)
        out = generate_whole_clip(models, direction=direction, condition=cond,
                                  duration_s=duration, fps=10, sample_rate=160, seed=3,
                                  sampler=FAST, overlap_frames=2, method=method, max_batch=4,
                                  net=_standin_net)
        assert out.windows == windows and out.nfe["forward"] == 2 * windows
        assert out.video.shape == (1, frames, 3, 4, 4) and out.audio.shape == (1, samples)
        assert bool(out.video.isfinite().all()) and bool(out.audio.isfinite().all())
        if direction == "video-to-audio":
            assert torch.equal(out.video[0], cond.permute(0, 3, 1, 2).float() / 127.5 - 1.0)
        else:
            assert torch.equal(out.audio[0], cond)


def test_autoregressive_window_continues_from_the_given_context() -> None:
    """Window k is given the first half of its overlap from what is already generated: that
    part of its own output is exactly the clip there (no jump where generation resumes), and
    the clip keeps it; over the rest of the overlap the clip moves from window k-1 to k."""
    from model.windowed import autoregressive
    from model.windows import plan_windows

    plan = plan_windows(2.0, window_frames=4, window_samples=64, overlap_frames=2, fps=10,
                        sample_rate=160)
    cond = (_video(20, 4).permute(0, 3, 1, 2).float() / 127.5 - 1).unsqueeze(0)
    out = autoregressive(_standin_net, plan, cond, "video-to-audio", FAST, guidance="gradient",
                         scale=3.0, seed=1, video_shape=(4, 3, 4, 4), audio_shape=(1, 64))
    clip = out.audio[0, 0]
    for k, w in enumerate(plan.windows):
        piece = out.pieces[k][0, 0]
        ctx = plan.sample_of(w.frame_start + 1) - w.sample_start if k else 0  # 1 of 2 frames
        assert torch.equal(clip[w.sample_start:w.sample_start + ctx], piece[:ctx])
        if k + 1 < plan.count:  # past the next window's overlap: this window alone
            a, b = w.sample_start + max(ctx, w.overlap_samples), plan.windows[k + 1].sample_start
            assert torch.equal(clip[a:b], piece[a - w.sample_start:b - w.sample_start])
        if k:  # crossfade: between the previous window's and this window's values
            prev = out.pieces[k - 1][0, 0]
            s0, s1 = w.sample_start + ctx, w.sample_start + w.overlap_samples
            mine = piece[ctx:w.overlap_samples]
            p0 = plan.windows[k - 1].sample_start
            theirs = prev[s0 - p0:s1 - p0]
            lo, hi = torch.minimum(mine, theirs), torch.maximum(mine, theirs)
            assert bool(((clip[s0:s1] >= lo - 1e-6) & (clip[s0:s1] <= hi + 1e-6)).all())


def test_seeds_are_deterministic_and_per_window() -> None:
    models = _standin_models()
    cond = _video(12, 4)
    kw = {"direction": "video-to-audio", "condition": cond, "duration_s": 1.2, "fps": 10,
              "sample_rate": 160, "sampler": SamplerSpec(name="ddim", steps=3, eta=1.0),
              "overlap_frames": 1, "net": _standin_net}
    a = generate_whole_clip(models, seed=5, **kw)
    b = generate_whole_clip(models, seed=5, **kw)
    c = generate_whole_clip(models, seed=6, **kw)
    assert torch.equal(a.audio, b.audio) and not torch.equal(a.audio, c.audio)
    # window 1 is not a copy of window 0's noise: its generated audio differs in shape over time
    w0, w1 = a.audio[0, :48], a.audio[0, 64:112]
    assert not torch.allclose(w0 - w0.mean(), w1 - w1.mean(), atol=1e-3)


@pytest.mark.parametrize("method", ["autoregressive", "fused"])
def test_progress_counts_windows_times_steps_and_cancel_stops_within_a_step(method) -> None:
    models = _standin_models()
    calls: list[int] = []

    def net(v, a, t, gens):
        calls.append(v.shape[0])
        return joint_standin(v, a, t)

    events: list[tuple[str, int, int]] = []
    kw = {"direction": "video-to-audio", "condition": _video(20, 4), "duration_s": 2.0, "fps": 10,
              "sample_rate": 160, "seed": 1, "sampler": SamplerSpec(name="ddim", steps=3),
              "overlap_frames": 2, "method": method, "max_batch": 4, "net": net}
    out = generate_whole_clip(models, progress=lambda *e: events.append(e), **kw)
    assert out.windows == 9
    assert events[-1] == ("base", 27, 27)
    assert [e[1] for e in events] == sorted(e[1] for e in events)
    if method == "fused":  # 3 steps x ceil(9 / 4) calls of <= 4 windows
        assert len(calls) == 9 and max(calls) <= 4 and out.nfe["calls"] == 9
    else:
        assert len(calls) == 27 and max(calls) == 1
    calls.clear()

    def cancel(stage: str, done: int, total: int) -> None:
        if done >= 9:
            raise SamplingCancelled("canceled")

    with pytest.raises(SamplingCancelled):
        generate_whole_clip(models, progress=cancel, **kw)
    # stopped right at the step that reported 9 done: no network evaluation after it
    assert sum(calls) == 9
    if method == "fused":  # within a step: progress after each batch of windows, cancel there
        calls.clear()

        def cancel_early(stage: str, done: int, total: int) -> None:
            if done >= 4:
                raise SamplingCancelled("canceled")

        with pytest.raises(SamplingCancelled):
            generate_whole_clip(models, progress=cancel_early, **kw)
        assert calls == [4]


@pytest.mark.parametrize("method", ["autoregressive", "fused"])
def test_several_samples_per_job_are_distinct_rows(method: str) -> None:
    models = _standin_models()
    calls: list[int] = []

    def net(v, a, t, gens):
        calls.append(v.shape[0])
        assert v.shape[0] == len(gens) * 2  # window-major, 2 rows per window
        return joint_standin(v, a, t)

    out = generate_whole_clip(models, direction="audio-to-video", condition=_audio(200, 160),
                              duration_s=1.2, fps=10, sample_rate=160, seed=4, sampler=FAST,
                              overlap_frames=2, num_samples=2, method=method, max_batch=4,
                              net=net)
    assert out.video.shape == (2, 12, 3, 4, 4) and out.audio.shape == (2, 192)
    assert not torch.allclose(out.video[0], out.video[1])
    assert max(calls) == (4 if method == "fused" else 2)  # <= max_batch rows per call


def test_fused_progress_with_a_multi_evaluation_sampler_is_monotone() -> None:
    """Singlestep DPM-Solver order 3 (3 evaluations in most steps): the within-step progress
    never passes the step's end before the step is done."""
    events: list[tuple[str, int, int]] = []
    out = generate_whole_clip(_standin_models(), direction="audio-to-video",
                              condition=_audio(320, 160), duration_s=2.0, fps=10,
                              sample_rate=160, seed=1, sampler=SamplerSpec(steps=5, order=3),
                              overlap_frames=2, method="fused", max_batch=2, net=_standin_net,
                              progress=lambda *e: events.append(e))
    steps = 2  # singlestep orders [3, 2]
    assert out.nfe["forward"] == 5 * 9 and out.nfe["calls"] == 5 * 5
    assert all(e[2] == steps * 9 for e in events) and events[-1][1] == steps * 9
    done = [e[1] for e in events]
    assert done == sorted(done) and len(done) == 5 * 5 + steps
    assert done.index(9) == 15  # step 1 is reported done after its 3 x 5 batches


def test_auto_method_fuses_fast_samplers_and_chains_the_ddpm_loop() -> None:
    models = _standin_models()
    kw = {"direction": "video-to-audio", "condition": _video(12, 4), "duration_s": 1.2, "fps": 10,
              "sample_rate": 160, "seed": 2, "overlap_frames": 2, "net": _standin_net}
    assert generate_whole_clip(models, sampler=FAST, **kw).method == "fused"
    out = generate_whole_clip(models, sampler=SamplerSpec(name="ddpm", steps=4), **kw)
    assert out.method == "autoregressive" and out.windows == 5 and out.nfe["forward"] == 20
    assert out.nfe["backward"] == 20 and bool(out.audio.isfinite().all())
    one = generate_whole_clip(models, sampler=FAST, **dict(kw, duration_s=0.4))
    assert one.method == "single-window" and one.windows == 1
    with pytest.raises(ValueError, match="autoregressive"):
        generate_whole_clip(models, sampler=SamplerSpec(name="ddpm", steps=4), method="fused",
                            **kw)


def test_limits_and_bad_conditions_say_what_to_do() -> None:
    models = _standin_models()
    kw = {"direction": "video-to-audio", "fps": 10, "sample_rate": 160, "seed": 1,
          "net": _standin_net}
    with pytest.raises(ValueError, match="MMD_MAX_WINDOWS"):
        generate_whole_clip(models, condition=_video(20, 4), duration_s=2.0, max_windows=4, **kw)
    with pytest.raises(ValueError, match="needs 20"):
        generate_whole_clip(models, condition=_video(12, 4), duration_s=2.0, **kw)
    with pytest.raises(ValueError, match="uint8"):
        generate_whole_clip(models, condition=_video(20, 8), duration_s=2.0, **kw)
    with pytest.raises(ValueError, match="trained at"):
        generate_whole_clip(models, condition=_video(20, 4), duration_s=2.0, fps=10,
                            sample_rate=16000, seed=1, direction="video-to-audio",
                            net=_standin_net)


def test_short_clip_pads_then_cuts() -> None:
    models = _standin_models()
    out = generate_whole_clip(models, direction="audio-to-video", condition=_audio(48, 160),
                              duration_s=0.3, fps=10, sample_rate=160, seed=1, sampler=FAST,
                              net=_standin_net)
    assert out.windows == 1 and out.video.shape == (1, 3, 3, 4, 4) and out.audio.shape == (1, 48)

"""The gateway's presets (service/presets.py, no torch) run exactly the model.speed sampler
settings in the worker, and ``mmd generate --official`` picks the official ones."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from core.contract import JobSpec
from core.sampling import PRESETS
from core.store import utcnow
from model import speed
from model.samplers import SamplerSpec
from worker.generate_cli import add_arguments, sampler_specs
from worker.runner import generation_request

EXPECTED = {
    ("fast", "joint"): (speed.FAST_BASE, speed.FAST_SR),
    ("official", "joint"): (speed.OFFICIAL_BASE, speed.OFFICIAL_SR),
    ("fast", "conditional"): (speed.FAST_CONDITIONAL, speed.FAST_SR),
    ("official", "conditional"): (speed.OFFICIAL_CONDITIONAL, speed.OFFICIAL_SR),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_service_presets_run_the_model_speed_settings(key: tuple[str, str]) -> None:
    sampler, sr = PRESETS[key]  # type: ignore[index]
    mode = "joint" if key[1] == "joint" else "video-to-audio"
    spec = JobSpec(id="x", mode=mode, model="default", seed=0, num_samples=1, sampler=sampler,
                   super_resolution=sr, preset=key[0], created_at=utcnow())
    request = generation_request(spec, sr_on=True)
    assert (request.base_sampler, request.sr_sampler) == EXPECTED[key]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults_are_fast_and_official_flag_selects_the_official_specs() -> None:
    assert sampler_specs(_args()) == (speed.FAST_BASE, speed.FAST_SR)
    assert sampler_specs(_args("--official")) == (speed.OFFICIAL_BASE, speed.OFFICIAL_SR)
    cond = ("--mode", "audio-to-video", "--input", "song.mp3")
    assert sampler_specs(_args(*cond)) == (speed.FAST_CONDITIONAL, speed.FAST_SR)
    assert sampler_specs(_args(*cond, "--official")) == (speed.OFFICIAL_CONDITIONAL,
                                                         speed.OFFICIAL_SR)


def test_cli_flags_override_single_fields() -> None:
    base, sr = sampler_specs(_args("--official", "--steps", "10", "--sr-steps", "5"))
    assert base == SamplerSpec(steps=10) and sr == SamplerSpec(name="ddim", steps=5)
    base, sr = sampler_specs(_args("--sampler", "ddim", "--sr-sampler", "dpm_solver++"))
    assert base.name == "ddim" and base.steps == speed.FAST_BASE.steps
    assert sr == SamplerSpec(name="dpm_solver++", steps=speed.FAST_SR.steps, order=3,
                             method="multistep", clip_x0=True)


def test_cli_caps_the_presets_multistep_order_at_few_steps_like_the_api() -> None:
    base, _ = sampler_specs(_args("--steps", "2"))
    assert base == dataclasses.replace(speed.FAST_BASE, steps=2, order=2)
    base, _ = sampler_specs(_args("--steps", "2", "--order", "3"))  # given: not capped
    assert base.order == 3


def test_sr_sampler_names_map_to_the_measured_specs() -> None:
    assert speed.sr_sampler_spec("ddim", 25) == speed.OFFICIAL_SR
    assert speed.sr_sampler_spec("dpm_solver++", 12).clip_x0 is True
    assert speed.sr_sampler_spec("dpm_solver++", 2).order == 2  # multistep: order <= steps
    assert speed.sr_sampler_spec("dpm_solver", 10) == SamplerSpec(
        steps=10, order=2, method="multistep", skip_type="time_uniform")

"""The presets (core/sampling.py, no torch) run exactly the measured sampler settings in the
worker; ``mmd generate`` resolves its flags with the same function as the API, and
``--official`` picks the official preset."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from core.contract import JobSpec
from core.sampling import MODES, PRESETS, SuperResolutionParams
from core.store import utcnow
from model.pipeline_types import MODES as MODEL_MODES
from model.samplers import SamplerSpec
from worker.generate_cli import add_arguments, sampler_specs
from worker.runner import generation_request
from worker.sampling import sampler_spec

# The settings bench/fast_defaults.py measured (tests/model/test_fast_defaults.py pins them).
OFFICIAL_BASE = SamplerSpec()  # DPM-Solver, 20 steps, order 3, singlestep
OFFICIAL_SR = SamplerSpec(name="ddim", steps=25)
FAST_BASE = SamplerSpec(name="dpm_solver++", steps=15, order=3, method="multistep")
FAST_SR = SamplerSpec(name="dpm_solver++", steps=12, order=3, method="multistep", clip_x0=True)
OFFICIAL_CONDITIONAL = SamplerSpec(name="ddpm", steps=1000)
# DDIM since the trained demo model judged it, 10 steps resampled once each since it showed
# one-frame misplaced flashes (core/sampling.py, bench/guidance.py)
FAST_CONDITIONAL = SamplerSpec(name="ddim", steps=10, resample=2)

EXPECTED = {
    ("fast", "joint"): (FAST_BASE, FAST_SR),
    ("official", "joint"): (OFFICIAL_BASE, OFFICIAL_SR),
    ("fast", "conditional"): (FAST_CONDITIONAL, FAST_SR),
    ("official", "conditional"): (OFFICIAL_CONDITIONAL, OFFICIAL_SR),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_service_presets_run_the_measured_settings(key: tuple[str, str]) -> None:
    sampler, sr = PRESETS[key]  # type: ignore[index]
    mode = "joint" if key[1] == "joint" else "video-to-audio"
    spec = JobSpec(id="x", mode=mode, model="default", seed=0, num_samples=1, sampler=sampler,
                   super_resolution=sr, preset=key[0], created_at=utcnow())
    request = generation_request(spec, sr_on=True)
    assert (request.base_sampler, request.sr_sampler) == EXPECTED[key]


def test_the_model_knows_the_contracts_modes() -> None:
    assert MODES == MODEL_MODES


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults_are_fast_and_official_flag_selects_the_official_specs() -> None:
    assert sampler_specs(_args()) == (FAST_BASE, FAST_SR)
    assert sampler_specs(_args("--official")) == (OFFICIAL_BASE, OFFICIAL_SR)
    cond = ("--mode", "audio-to-video", "--input", "song.mp3")
    assert sampler_specs(_args(*cond)) == (FAST_CONDITIONAL, FAST_SR)
    assert sampler_specs(_args(*cond, "--official")) == (OFFICIAL_CONDITIONAL, OFFICIAL_SR)


def test_cli_flags_override_single_fields() -> None:
    base, sr = sampler_specs(_args("--official", "--steps", "10", "--sr-steps", "5"))
    assert base == SamplerSpec(steps=10) and sr == SamplerSpec(name="ddim", steps=5)
    base, sr = sampler_specs(_args("--sampler", "ddim", "--sr-sampler", "dpm_solver++"))
    assert base.name == "ddim" and base.steps == FAST_BASE.steps
    assert sr == SamplerSpec(name="dpm_solver++", steps=FAST_SR.steps, order=3,
                             method="multistep", clip_x0=True)


def test_cli_caps_the_presets_multistep_order_at_few_steps_like_the_api() -> None:
    base, _ = sampler_specs(_args("--steps", "2"))
    assert base == dataclasses.replace(FAST_BASE, steps=2, order=2)
    # an order given is not capped, and the API's rule refuses it before any model loads
    with pytest.raises(ValueError, match=r"sampler\.steps=2 is below sampler\.order=3"):
        sampler_specs(_args("--steps", "2", "--order", "3"))


def test_sr_sampler_names_map_to_the_measured_specs() -> None:
    def sr(name: str, steps: int) -> SamplerSpec:
        return sampler_spec(SuperResolutionParams(sampler=name, steps=steps).sampler_params())

    assert sr("ddim", 25) == OFFICIAL_SR
    assert sr("dpm_solver++", 12).clip_x0 is True
    assert sr("dpm_solver++", 2).order == 2  # multistep: order <= steps
    assert sr("dpm_solver", 10) == SamplerSpec(
        steps=10, order=2, method="multistep", skip_type="time_uniform")


def test_stored_records_without_the_sr_variant_fields_resolve_to_the_same_sampler() -> None:
    """A record written before the SR fields were stored reads back as what it ran."""
    old = SuperResolutionParams.model_validate({"enabled": True, "sampler": "dpm_solver++",
                                                "steps": 12})
    assert sampler_spec(old.sampler_params()) == FAST_SR
    assert old.model_dump()["clip_x0"] is True and old.method == "multistep"


def test_cli_resample_flag_and_a_non_ddim_sampler_on_the_conditional_preset() -> None:
    cond = ("--mode", "audio-to-video", "--input", "song.mp3")
    base, _ = sampler_specs(_args(*cond, "--resample", "3"))
    assert base == SamplerSpec(name="ddim", steps=10, resample=3)
    base, _ = sampler_specs(_args(*cond, "--sampler", "dpm_solver"))
    assert base.name == "dpm_solver" and base.resample == 1  # the preset's resampling is DDIM's
    with pytest.raises(ValueError, match=r"sampler\.resample=2 needs sampler\.name='ddim'"):
        sampler_specs(_args(*cond, "--sampler", "dpm_solver", "--resample", "2"))

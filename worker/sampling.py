"""The model's ``SamplerSpec`` of a resolved :class:`core.sampling.SamplerParams`: field for
field, so a job runs exactly the sampler settings its stored spec shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.sampling import Mode, Preset, SamplerParams, Sampling, resolve

if TYPE_CHECKING:
    from model.samplers import SamplerSpec


def sampler_spec(params: SamplerParams) -> SamplerSpec:
    """``params`` as the model's ``SamplerSpec`` (every field carried over, nothing added)."""
    from model.samplers import SamplerSpec

    return SamplerSpec(**params.model_dump())


def sampling_specs(sampling: Sampling) -> tuple[SamplerSpec, SamplerSpec]:
    """``(base, SR)`` ``SamplerSpec`` of resolved ``sampling``."""
    return (sampler_spec(sampling.sampler),
            sampler_spec(sampling.super_resolution.sampler_params()))


def preset_specs(preset: Preset, mode: Mode = "joint") -> tuple[SamplerSpec, SamplerSpec]:
    """``(base, SR)`` ``SamplerSpec`` of ``preset`` in ``mode`` (benchmarks, tests)."""
    return sampling_specs(resolve(mode, preset))

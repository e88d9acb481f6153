"""The model's ``SamplerSpec`` of a resolved :class:`core.sampling.SamplerParams` (field for
field) and the ``GenerationRequest`` of a job, so a job runs exactly the sampler settings (and
the prompt) its stored spec shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.contract import JobSpec
from core.sampling import Mode, Preset, SamplerParams, SamplerRequest, Sampling, resolve

if TYPE_CHECKING:
    from model.pipeline import GenerationRequest
    from model.samplers import SamplerSpec


def sampler_spec(params: SamplerParams) -> SamplerSpec:
    """``params`` as the model's ``SamplerSpec`` (every field carried over, nothing added)."""
    from model.samplers import SamplerSpec

    return SamplerSpec(**params.model_dump())


def sampling_specs(sampling: Sampling) -> tuple[SamplerSpec, SamplerSpec]:
    """``(base, SR)`` ``SamplerSpec`` of resolved ``sampling``."""
    return (sampler_spec(sampling.sampler),
            sampler_spec(sampling.super_resolution.sampler_params()))


def preset_specs(preset: Preset, mode: Mode = "joint",
                 steps: int | None = None) -> tuple[SamplerSpec, SamplerSpec]:
    """``(base, SR)`` ``SamplerSpec`` of ``preset`` in ``mode`` (benchmarks, tests), the base
    steps replaced by ``steps`` when given (a multistep order capped at them, as the API does)."""
    request = SamplerRequest(steps=steps) if steps is not None else None
    return sampling_specs(resolve(mode, preset, request))


def generation_request(spec: JobSpec, sr_on: bool, cond_video: Any = None,
                       cond_audio: Any = None) -> GenerationRequest:
    """The ``model.pipeline.GenerationRequest`` of ``spec``: its stored, resolved sampler
    settings as they are."""
    from model.pipeline import GenerationRequest

    return GenerationRequest(
        mode=spec.mode, seed=spec.seed, num_samples=spec.num_samples,
        base_sampler=sampler_spec(spec.sampler), super_resolution=sr_on,
        sr_sampler=sampler_spec(spec.super_resolution.sampler_params()),
        guidance=spec.guidance, guidance_scale=spec.guidance_scale,
        condition_video=cond_video, condition_audio=cond_audio,
        prompt=spec.prompt, prompt_scale=spec.prompt_scale,
    )


def resolved_prompt(spec: JobSpec, models: Any) -> tuple[str | None, float | None]:
    """``(prompt, prompt_scale)`` as ``spec`` ran on ``models`` (``LoadedModels``): the prompt
    as its aligner uses it (``Aligner.check_prompt``) and the scale, the aligner's
    ``default_scale`` when the spec has none; ``(None, None)`` for an unguided job."""
    if spec.prompt is None:
        return None, None
    aligner = models.aligner
    if aligner is None:  # validate() refuses such a job before it runs
        return spec.prompt, spec.prompt_scale
    scale = spec.prompt_scale if spec.prompt_scale is not None else aligner.default_scale
    return aligner.check_prompt(spec.prompt), float(scale)


def spec_key(spec: JobSpec) -> tuple[object, ...] | None:
    """Jobs with equal keys may share a batch: the same model and ``num_samples``, and equal
    ``model.pipeline.batch_key`` of their requests (the one rule of what may run together);
    None = this job always runs alone."""
    from model.pipeline import batch_key

    if spec.duration_s is not None:  # a span of windows runs alone (worker.whole_clip)
        return None
    key = batch_key(generation_request(spec, sr_on=spec.super_resolution.enabled))
    return None if key is None else (spec.model, spec.num_samples, key)

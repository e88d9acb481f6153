"""Sampling presets: what ``preset: "fast"`` and ``preset: "official"`` mean, and how a request's
own sampler fields override them (no torch here).

| preset | mode | base sampler | SR sampler | NFE (base + SR per frame) |
|---|---|---|---|---|
| fast | joint | DPM-Solver++ multistep order 3, 15 steps | DPM-Solver++ multistep o3 12 (x0 clipped) | 15 + 12 |
| official | joint | DPM-Solver singlestep order 3, 20 steps | DDIM 25 | 20 + 25 |
| fast | conditional | DPM-Solver singlestep order 3, 20 steps | DPM-Solver++ multistep o3 12 (x0 clipped) | 20 (+20 backward) + 12 |
| official | conditional | DDPM, 1000 steps (official loop) | DDIM 25 | 1000 (+1000 backward) + 25 |

Guidance is the same in both (``gradient``, scale 3.0: the official scripts' classifier_scale).
A field the client sends (``sampler.steps``, ``super_resolution.sampler``, ...) replaces the
preset's value for that field only; the others come from the preset (a preset's multistep order
is capped at the steps: ``{"steps": 2}`` runs order 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["joint", "video-to-audio", "audio-to-video"]
SamplerName = Literal["dpm_solver", "dpm_solver++", "ddim", "ddpm"]
Preset = Literal["fast", "official"]


class Frozen(BaseModel):
    """Base of the contract's models: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplerParams(Frozen):
    """The base (64x64 video + audio) sampler a job runs (resolved: ``JobSpec.sampler``).
    Defaults: the official DPM-Solver 20 / order 3 (``preset: "official"`` for a joint job)."""

    name: SamplerName = "dpm_solver"
    steps: int = Field(20, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int = Field(3, ge=1, le=3)
    method: Literal["singlestep", "multistep", "adaptive"] = "singlestep"
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")


class SuperResolutionParams(Frozen):
    """The 64->256 video super-resolution stage a job runs (resolved)."""

    enabled: bool = True
    sampler: SamplerName = "ddim"
    steps: int = Field(25, ge=1, description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")


class SamplerRequest(Frozen):
    """The base sampler a request asks for: each field given replaces the preset's; null or
    omitted fields come from the preset (see ``preset``)."""

    name: SamplerName | None = None
    steps: int | None = Field(None, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int | None = Field(None, ge=1, le=3)
    method: Literal["singlestep", "multistep", "adaptive"] | None = None
    eta: float | None = Field(None, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")


class SuperResolutionRequest(Frozen):
    """The super-resolution stage a request asks for (sampler and steps: null = the preset's)."""

    enabled: bool = True
    sampler: SamplerName | None = None
    steps: int | None = Field(None, ge=1,
                              description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")


Kind = Literal["joint", "conditional"]

PRESETS: dict[tuple[Preset, Kind], tuple[SamplerParams, SuperResolutionParams]] = {
    ("fast", "joint"): (
        SamplerParams(name="dpm_solver++", steps=15, order=3, method="multistep"),
        SuperResolutionParams(sampler="dpm_solver++", steps=12),
    ),
    ("official", "joint"): (
        SamplerParams(name="dpm_solver", steps=20, order=3, method="singlestep"),
        SuperResolutionParams(sampler="ddim", steps=25),
    ),
    ("fast", "conditional"): (
        SamplerParams(name="dpm_solver", steps=20, order=3, method="singlestep"),
        SuperResolutionParams(sampler="dpm_solver++", steps=12),
    ),
    ("official", "conditional"): (
        SamplerParams(name="ddpm", steps=1000),
        SuperResolutionParams(sampler="ddim", steps=25),
    ),
}


@dataclass(frozen=True)
class Sampling:
    """The resolved sampler settings of one request: what the job stores and the worker runs."""

    preset: Preset
    sampler: SamplerParams
    super_resolution: SuperResolutionParams


def kind_of(mode: Mode) -> Kind:
    return "joint" if mode == "joint" else "conditional"


def _merge(base: Any, given: Any) -> dict[str, Any]:
    """``base``'s fields with every field ``given`` sets (not None) on top."""
    out = base.model_dump()
    out.update({k: v for k, v in given.model_dump().items() if v is not None})
    return out


def resolve(params: Any, mode: Mode, default_preset: Preset) -> Sampling:
    """The sampler settings ``params`` (a request with ``preset``, ``sampler`` and
    ``super_resolution``) asks for in ``mode``: the preset's (``params.preset``, else
    ``default_preset`` = ``MMD_SAMPLING_PRESET``) with the request's own fields on top."""
    preset: Preset = params.preset or default_preset
    if (preset, kind_of(mode)) not in PRESETS:
        raise ValueError(f"preset {preset!r} is unknown; expected 'fast' or 'official'")
    base_sampler, base_sr = PRESETS[(preset, kind_of(mode))]
    merged = _merge(base_sampler, params.sampler)
    if params.sampler.order is None and merged["method"] == "multistep":
        merged["order"] = min(merged["order"], merged["steps"])  # the preset's order, capped
    sampler = SamplerParams(**merged)
    sr = SuperResolutionParams(**_merge(base_sr, params.super_resolution))
    check_runnable(sampler)
    return Sampling(preset=preset, sampler=sampler, super_resolution=sr)


def check_runnable(sampler: SamplerParams) -> None:
    """ValueError for resolved DPM-Solver settings the sampler would refuse at run time."""
    if not sampler.name.startswith("dpm_solver"):
        return
    if sampler.method == "multistep" and sampler.steps < sampler.order:
        raise ValueError(
            f"sampler.steps={sampler.steps} is below sampler.order={sampler.order} (DPM-Solver "
            "multistep needs steps >= order): send more steps or a lower sampler.order")
    if sampler.method == "adaptive" and sampler.order != 2:
        raise ValueError(f"adaptive DPM-Solver needs sampler.order=2, got {sampler.order}")

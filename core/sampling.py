"""Sampler settings: the one preset table, how a request's own fields override it
(:func:`resolve`, called by the API and by ``mmd generate``), and the rules a resolved setting
must satisfy. No torch here: the worker turns a resolved :class:`SamplerParams` into the
model's ``SamplerSpec`` field for field (``worker.sampling``), so what a job stores is exactly
what runs.

| preset | mode | base sampler | SR sampler | NFE (base + SR a frame) |
|---|---|---|---|---|
| fast | joint | DPM-Solver++ multistep o3 15 | DPM-Solver++ multistep o3 12 (clip) | 15 + 12 |
| official | joint | DPM-Solver singlestep o3 20 | DDIM 25 | 20 + 25 |
| fast | conditional | DDIM 10 x 2 (resampled) | DPM-Solver++ multistep o3 12 (clip) | 38 + 12 |
| official | conditional | DDPM 1000 (official loop) | DDIM 25 | 2000 + 25 |

(clip): x0 clipped to [-1, 1] like DDIM. Conditional NFE count the forward and the backward
pass of gradient guidance. x 2 (``resample=2``): each DDIM step but the last runs twice, the
first result re-noised back to the step's level in between (19 evaluations for 10 steps).

Guidance is the same in both: ``gradient``, with the model's scale when a request sends none
(:func:`default_guidance_scale`: 3.0, the official scripts' classifier_scale, for the official
models; 1100 for ``demo``, measured).
A field the client sends (``sampler.steps``, ``super_resolution.sampler``, ...) replaces the
preset's value for that field only; the others come from the preset (a preset's multistep order
is capped at the steps: ``{"steps": 2}`` runs order 2).

How the fast settings were chosen (``bench/fast_defaults.py``, pinned by
``tests/model/test_fast_defaults.py``): base NFE 20 -> 15, SR NFE 25 -> 12 per frame. The
acceptance rule, on the analytic stand-ins and on the golden and random tiny weights: the fast
sample lies within 2x the official sampler's own discretisation error of the official sample
(two solvers each within e of the exact solve can be 2e apart), and its own error is at most 2x
the official's. SR DPM-Solver++ needs x0 clipped like DDIM (``clip_x0``; unclipped it diverges
on untrained weights); multistep o3 12 steps passes on every case and x_T draw measured (worst
1.9x), and on the smooth stand-in ODE it is 3x MORE accurate than DDIM-25 itself. 10 steps is at
the 2x edge on the golden weights; DDIM-10 fails the own-error bound (2.4x on the stand-ins). The
fast conditional sampler is DDIM 10 x 2 (19 forward + 19 backward passes) instead of the
official 1000-step DDPM loop (``tests/model/test_conditional_fast.py``). It was DPM-Solver
singlestep o3 20 until the trained demo model judged it (``bench/guidance.py``, audio-to-video
jobs at scale 300): DPM-Solver 20 sync 0.62 / colour-pitch 0.80 (8 jobs), DDIM 20 0.84 / 0.90 at
the same NFE; DPM-Solver's third-order steps amplify the guidance gradient (pixels lit 12-14 %
vs 6 % in real clips at larger scales), DDIM clips x0 every step. Video-to-audio scored the same
with either. DDIM 20 then lost audio-to-video clips to one-frame misplaced flashes (64 jobs,
seeds 1000.. / 5000..: sync 0.814 / 0.744, colour-pitch 0.766 / 0.701 at scale 450); resampling
each step once more at half the steps, the same cost, gave 0.911 / 0.945 and 0.867 / 0.879 at
scale 1100 (docs/demo-model.md has the sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class EnumVarnames:
    """Annotated metadata: the member names a generated client gives an enum's values, as the
    schema's ``x-enum-varnames`` (openapi-python-client, OpenAPI Generator). Needed where values
    differ only in characters an identifier drops (``dpm_solver`` / ``dpm_solver++``)."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["x-enum-varnames"] = list(self.names)
        return schema


Mode = Literal["joint", "video-to-audio", "audio-to-video"]
SamplerNameValue = Literal["dpm_solver", "dpm_solver++", "ddim", "ddpm"]
SamplerName = Annotated[SamplerNameValue,
                        EnumVarnames("DPM_SOLVER", "DPM_SOLVER_PP", "DDIM", "DDPM")]
Method = Literal["singlestep", "multistep", "adaptive"]
SkipType = Literal["logSNR", "time_uniform", "time_quadratic"]
Preset = Literal["fast", "official"]
Kind = Literal["joint", "conditional"]

MODES: tuple[Mode, ...] = get_args(Mode)
SAMPLER_NAMES: tuple[SamplerNameValue, ...] = get_args(SamplerNameValue)
METHODS: tuple[Method, ...] = get_args(Method)
PRESET_NAMES: tuple[Preset, ...] = get_args(Preset)


class Frozen(BaseModel):
    """Base of the contract's models: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


RESAMPLE_HELP = ("DDIM only: runs of each step but the last, re-noised back between runs "
                 "(RePaint's resampling; 1 = plain DDIM; bounded by MMD_MAX_RESAMPLE)")


class SamplerParams(Frozen):
    """A resolved sampler: every field the worker passes on to the model's ``SamplerSpec``
    (``JobSpec.sampler``, and :meth:`SuperResolutionParams.sampler_params`). Defaults: the
    official DPM-Solver 20 / order 3 singlestep."""

    name: SamplerName = "dpm_solver"
    steps: int = Field(20, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int = Field(3, ge=1, le=3)
    method: Method = "singlestep"
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")
    resample: int = Field(1, ge=1, description=RESAMPLE_HELP)
    skip_type: SkipType = Field("logSNR", description="DPM-Solver time grid")
    clip_x0: bool = Field(False, description="DPM-Solver++: clip the data prediction to [-1, 1]")


# The SR stage runs a named sampler as this variant (what bench/fast_defaults.py measured for
# dpm_solver++; the official SR script's alternative for dpm_solver); multistep orders are
# capped at the steps. ddim and ddpm run as named.
SR_VARIANTS: dict[SamplerName, dict[str, Any]] = {
    "dpm_solver++": {"order": 3, "method": "multistep", "clip_x0": True},
    "dpm_solver": {"order": 2, "method": "multistep", "skip_type": "time_uniform"},
    "ddim": {},
    "ddpm": {},
}


class SuperResolutionParams(Frozen):
    """The 64->256 video super-resolution stage a job runs (resolved). ``order``, ``method``,
    ``skip_type`` and ``clip_x0`` follow from ``sampler`` and ``steps`` (:data:`SR_VARIANTS`):
    left out (as by records stored before they were), they are filled in, so the stored spec
    always says what runs."""

    enabled: bool = True
    sampler: SamplerName = "ddim"
    steps: int = Field(25, ge=1, description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")
    order: int = Field(3, ge=1, le=3)
    method: Method = "singlestep"
    skip_type: SkipType = "logSNR"
    clip_x0: bool = False

    @model_validator(mode="before")
    @classmethod
    def _variant(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("sampler", "ddim")
        steps = data.get("steps", 25)
        variant = dict(SR_VARIANTS.get(name, {}))
        if variant.get("method") == "multistep" and isinstance(steps, int):
            variant["order"] = min(variant["order"], steps)
        return {**variant, **data}

    def sampler_params(self) -> SamplerParams:
        """The SR sampler as a :class:`SamplerParams` (what the worker runs)."""
        return SamplerParams(name=self.sampler, steps=self.steps, order=self.order,
                             method=self.method, skip_type=self.skip_type, clip_x0=self.clip_x0)


class SamplerRequest(Frozen):
    """The base sampler a request asks for: each field given replaces the preset's; null or
    omitted fields come from the preset (see ``preset``)."""

    name: SamplerName | None = None
    steps: int | None = Field(None, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int | None = Field(None, ge=1, le=3)
    method: Method | None = None
    eta: float | None = Field(None, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")
    resample: int | None = Field(None, ge=1, description=RESAMPLE_HELP)


class SuperResolutionRequest(Frozen):
    """The super-resolution stage a request asks for (sampler and steps: null = the preset's)."""

    enabled: bool = True
    sampler: SamplerName | None = None
    steps: int | None = Field(None, ge=1,
                              description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")


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
        SamplerParams(name="ddim", steps=10, resample=2),
        SuperResolutionParams(sampler="dpm_solver++", steps=12),
    ),
    ("official", "conditional"): (
        SamplerParams(name="ddpm", steps=1000),
        SuperResolutionParams(sampler="ddim", steps=25),
    ),
}


# Gradient-guidance scale per base preset when a request sends none; unlisted presets (the
# official ones) get DEFAULT_GUIDANCE_SCALE. Mirrors model.config.UNetConfig.guidance_scale
# (tests/model/test_guidance_defaults.py holds them equal; the measurements are there).
DEFAULT_GUIDANCE_SCALE = 3.0
GUIDANCE_SCALES: dict[str, float] = {"demo": 1100.0}


def default_guidance_scale(preset: str, given: float | None = None) -> float:
    """The guidance scale a conditional job on base preset ``preset`` runs with: ``given`` (the
    request's), else the preset's default."""
    if given is not None:
        return float(given)
    return GUIDANCE_SCALES.get(preset.lower(), DEFAULT_GUIDANCE_SCALE)


@dataclass(frozen=True)
class Sampling:
    """The resolved sampler settings of one request: what the job stores and the worker runs."""

    preset: Preset
    sampler: SamplerParams
    super_resolution: SuperResolutionParams


def kind_of(mode: Mode) -> Kind:
    """Which preset row a mode uses: ``joint``, or ``conditional`` for the two conditional modes."""
    return "joint" if mode == "joint" else "conditional"


def resolve(mode: Mode, preset: Preset, sampler: SamplerRequest | None = None,
            super_resolution: SuperResolutionRequest | None = None) -> Sampling:
    """The sampler settings a request asks for in ``mode``: ``preset``'s, with the fields
    ``sampler`` and ``super_resolution`` set (not None) on top. A preset's multistep order is
    capped at the steps; an order given is not. ValueError for settings that cannot run
    (:func:`check_runnable`) or an unknown preset."""
    if (preset, kind_of(mode)) not in PRESETS:
        raise ValueError(f"preset {preset!r} is unknown; expected one of {list(PRESET_NAMES)}")
    sampler = sampler or SamplerRequest()
    super_resolution = super_resolution or SuperResolutionRequest()
    base_sampler, base_sr = PRESETS[(preset, kind_of(mode))]
    merged = _merge(base_sampler, sampler)
    if sampler.order is None and merged["method"] == "multistep":
        merged["order"] = min(merged["order"], merged["steps"])  # the preset's order, capped
    if sampler.resample is None and merged["name"] != "ddim":
        merged["resample"] = 1  # the preset's resampling is DDIM's; another sampler runs once
    resolved = SamplerParams(**merged)
    sr_given = _given(super_resolution)
    sr = SuperResolutionParams(enabled=super_resolution.enabled,
                               sampler=sr_given.get("sampler", base_sr.sampler),
                               steps=sr_given.get("steps", base_sr.steps))
    check_runnable(resolved)
    return Sampling(preset=preset, sampler=resolved, super_resolution=sr)


def check_runnable(sampler: SamplerParams) -> None:
    """ValueError for resolved settings the sampler would refuse at run time."""
    if sampler.resample > 1 and sampler.name != "ddim":
        raise ValueError(f"sampler.resample={sampler.resample} needs sampler.name='ddim' (got "
                         f"{sampler.name!r}): send resample 1 or leave it out")
    if not sampler.name.startswith("dpm_solver"):
        return
    if sampler.method == "multistep" and sampler.steps < sampler.order:
        raise ValueError(
            f"sampler.steps={sampler.steps} is below sampler.order={sampler.order} (DPM-Solver "
            "multistep needs steps >= order): send more steps or a lower sampler.order")
    if sampler.method == "adaptive" and sampler.order != 2:
        raise ValueError(f"adaptive DPM-Solver needs sampler.order=2, got {sampler.order}")


def _given(request: BaseModel) -> dict[str, Any]:
    """The fields of ``request`` that are set (not None)."""
    return {k: v for k, v in request.model_dump().items() if v is not None}


def _merge(base: BaseModel, given: BaseModel) -> dict[str, Any]:
    """``base``'s fields with every field ``given`` sets (not None) on top."""
    return {**base.model_dump(), **_given(given)}

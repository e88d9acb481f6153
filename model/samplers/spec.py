"""SamplerSpec: the frozen description of one sampler configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SamplerName = Literal["dpm_solver", "dpm_solver++", "ddim", "ddpm"]
_NAMES = ("dpm_solver", "dpm_solver++", "ddim", "ddpm")
_METHODS = ("singlestep", "multistep", "adaptive")
_SKIPS = ("logSNR", "time_uniform", "time_quadratic")


@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler to run and how.

    :param name: ``dpm_solver`` (noise prediction), ``dpm_solver++`` (data prediction),
        ``ddim`` or ``ddpm`` (ancestral).
    :param steps: respaced steps for ddim/ddpm (``ddim`` uses the ``ddimN`` stride rule, ``ddpm``
        the section-count rule; 1000 = no respacing), or DPM-Solver steps (ignored by adaptive).
    :param order: DPM-Solver order 1..3.
    :param method: DPM-Solver method.
    :param skip_type: DPM-Solver time grid.
    :param thresholding: dynamic thresholding of the data prediction (DPM-Solver++ only).
    :param clip_x0: clip the data prediction to [-1, 1] at every network call (DPM-Solver++
        only; the same correction DDIM applies to its x0, so a fast SR solver lands where the
        official clipped DDIM does). Exclusive with ``thresholding`` (both bound x0).
    :param eta: DDIM stochasticity (0 = deterministic).
    :param resample: DDIM only: every step but the last runs ``resample`` times; between runs the
        step's result is re-noised back to the step's start level with fresh noise ("time
        travel", RePaint's resampling), so gradient guidance gets several chances to agree with
        what the model sees at that level. 1 = plain DDIM; network evaluations
        ``resample * (steps - 1) + 1``. The fast conditional preset runs DDIM 10 x 2.
    :param official_compat: reproduce the official implementation's defects where we fixed
        them (audio first-order DPM-Solver update, float16 alphas_cumprod in the SR solver,
        the conditional DDPM loop returning the reconstructed condition); see the samplers.
        Defects that only crash or mis-shape (batch size 1 in the multimodal DPM-Solver, the
        audio shapes of multistep order 3) are fixed unconditionally and not reproducible.
    """

    name: SamplerName = "dpm_solver"
    steps: int = 20
    order: int = 3
    method: Literal["singlestep", "multistep", "adaptive"] = "singlestep"
    skip_type: Literal["logSNR", "time_uniform", "time_quadratic"] = "logSNR"
    thresholding: bool = False
    clip_x0: bool = False
    eta: float = 0.0
    resample: int = 1
    official_compat: bool = False

    def __post_init__(self) -> None:
        if self.name not in _NAMES:
            raise ValueError(f"sampler name {self.name!r} is unknown; expected one of {_NAMES}")
        if self.method not in _METHODS:
            raise ValueError(f"method {self.method!r} is unknown; expected one of {_METHODS}")
        if self.skip_type not in _SKIPS:
            raise ValueError(f"skip_type {self.skip_type!r} is unknown; expected one of {_SKIPS}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in 1..1000, got {self.steps}")
        if self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order}")
        if self.resample < 1:
            raise ValueError(f"resample must be >= 1, got {self.resample}")
        if self.resample > 1 and self.name != "ddim":
            raise ValueError(f"resample={self.resample} needs name='ddim' (got {self.name!r}); "
                             "the other samplers run each step once")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.thresholding and self.name != "dpm_solver++":
            raise ValueError("thresholding needs name='dpm_solver++' (data prediction)")
        if self.clip_x0 and self.name != "dpm_solver++":
            raise ValueError(f"clip_x0 needs name='dpm_solver++' (data prediction), got "
                             f"{self.name!r} (ddim/ddpm always clip x0)")
        if self.clip_x0 and self.thresholding:
            raise ValueError("clip_x0 and thresholding both bound x0; set only one of them")

    @property
    def is_dpm(self) -> bool:
        return self.name in ("dpm_solver", "dpm_solver++")

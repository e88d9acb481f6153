"""Noise schedules: the discrete float64 tables, respacing, and the continuous-time view.

* :class:`DiscreteSchedule` -- the tables of the discrete process (float64 numpy), gathered per
  batch element with :meth:`DiscreteSchedule.gather` (index in float64, *then* cast to float32).
* :func:`space_timesteps` / :meth:`DiscreteSchedule.respaced` -- ``"ddimN"`` and section counts;
  ``timestep_map[k]`` is the original index the network sees at respaced index ``k``.
* :class:`ContinuousSchedule` -- the piecewise-linear continuous-time view used by DPM-Solver
  (``log alpha(t)``, ``sigma(t)``, ``lambda(t)`` and its inverse).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

TRAIN_STEPS = 1000


def linear_betas(n: int = TRAIN_STEPS) -> np.ndarray:
    """``n`` betas from ``scale*1e-4`` to ``scale*0.02`` (``scale = 1000/n``), float64."""
    if n < 1:
        raise ValueError(f"number of diffusion steps must be >= 1, got {n}")
    scale = 1000.0 / n
    return np.linspace(scale * 1e-4, scale * 0.02, n, dtype=np.float64)


def space_timesteps(num_steps: int, spacing: str | Sequence[int]) -> list[int]:
    """The sorted kept timesteps of a respaced process.

    :param spacing: ``""`` (keep all), ``"ddimN"`` (the smallest stride giving exactly N steps),
        a comma list of section counts ``"10,15"`` or a sequence of counts.
    """
    if isinstance(spacing, str):
        if spacing == "":
            return list(range(num_steps))
        if spacing.startswith("ddim"):
            want = int(spacing[4:])
            for stride in range(1, num_steps):
                if len(range(0, num_steps, stride)) == want:
                    return list(range(0, num_steps, stride))
            if want == num_steps:
                return list(range(num_steps))
            raise ValueError(
                f"cannot keep exactly {want} of {num_steps} steps with an integer stride"
            )
        counts = [int(c) for c in spacing.split(",")]
    else:
        counts = [int(c) for c in spacing]
    size, extra = divmod(num_steps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        length = size + (1 if i < extra else 0)
        if count > length or count < 1:
            raise ValueError(
                f"cannot keep {count} steps of a section of {length} (need 1..{length})"
            )
        if count == 1:
            offsets = [0]
        else:
            offsets = [round(j * (length - 1) / (count - 1)) for j in range(count)]
        kept.extend(start + o for o in offsets)
        start += length
    return sorted(set(kept))


@dataclass(frozen=True, eq=False)
class DiscreteSchedule:
    """Float64 tables of a (possibly respaced) discrete process of ``len(betas)`` steps."""

    betas: np.ndarray
    timestep_map: np.ndarray  # int64 [K]: original index seen by the network
    alphas_cumprod: np.ndarray = field(init=False)
    alphas_cumprod_prev: np.ndarray = field(init=False)
    posterior_variance: np.ndarray = field(init=False)
    posterior_log_variance_clipped: np.ndarray = field(init=False)
    posterior_mean_coef1: np.ndarray = field(init=False)
    posterior_mean_coef2: np.ndarray = field(init=False)
    log_betas: np.ndarray = field(init=False)
    sqrt_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_one_minus_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_recip_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_recipm1_alphas_cumprod: np.ndarray = field(init=False)
    fixed_large_log_variance: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        b = np.asarray(self.betas, dtype=np.float64)
        acp = np.cumprod(1.0 - b)
        prev = np.append(1.0, acp[:-1])
        post_var = b * (1.0 - prev) / (1.0 - acp)
        clipped = np.log(np.append(post_var[1], post_var[1:])) if len(b) > 1 else np.log(b)
        large = np.append(post_var[1], b[1:]) if len(b) > 1 else b
        values = {
            "betas": b,
            "timestep_map": np.asarray(self.timestep_map, dtype=np.int64),
            "alphas_cumprod": acp,
            "alphas_cumprod_prev": prev,
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": clipped,
            "posterior_mean_coef1": b * np.sqrt(prev) / (1.0 - acp),
            "posterior_mean_coef2": (1.0 - prev) * np.sqrt(1.0 - b) / (1.0 - acp),
            "log_betas": np.log(b),
            "sqrt_alphas_cumprod": np.sqrt(acp),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / acp),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / acp - 1.0),
            "fixed_large_log_variance": np.log(large),
        }
        for name, value in values.items():
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @classmethod
    def linear(cls, num_steps: int = TRAIN_STEPS) -> DiscreteSchedule:
        return cls(betas=linear_betas(num_steps), timestep_map=np.arange(num_steps))

    def respaced(self, spacing: str | Sequence[int]) -> DiscreteSchedule:
        """The respaced process keeping ``space_timesteps(T, spacing)`` (float64 betas rebuilt)."""
        kept = space_timesteps(self.num_steps, spacing)
        acp = self.alphas_cumprod[kept]
        prev = np.append(1.0, acp[:-1])
        return DiscreteSchedule(betas=1.0 - acp / prev, timestep_map=self.timestep_map[kept])

    def table(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def gather(self, name: str, index: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """``table[index]`` for an int index ``[B]`` (negative wraps); float64, then cast."""
        table = torch.tensor(self.table(name), dtype=torch.float64, device=index.device)
        return table[index.long()].to(dtype)

    def model_timesteps(self, index: Tensor) -> Tensor:
        """The original timesteps the network sees for respaced indices ``index`` (int64)."""
        return torch.tensor(self.timestep_map, device=index.device)[index.long()]


def _rounded(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn`` of a float32 tensor taken in float64 and rounded once to float32 (the correctly
    rounded result for sqrt; for exp/log barring a double rounding ~1e-8 of the time). Other
    dtypes (and MPS, which has no float64) use the native kernel."""
    if x.dtype != torch.float32 or x.device.type == "mps":
        return fn(x)
    return fn(x.to(torch.float64)).to(torch.float32)


def ieee_sqrt(x: Tensor) -> Tensor:
    """Correctly rounded float32 square root (IEEE 754 requires it). Some CPU builds of torch
    evaluate the float32 ``torch.sqrt`` kernel with a 1-ulp error for ~17% of inputs."""
    return _rounded(torch.sqrt, x)


def ieee_exp(x: Tensor) -> Tensor:
    """Float32 ``exp`` rounded from float64 (see :func:`ieee_log`)."""
    return _rounded(torch.exp, x)


def ieee_log(x: Tensor) -> Tensor:
    """Float32 ``log`` rounded from float64.

    The DPM-Solver scalar path (knot table, ``alpha``/``sigma``/``lambda`` at ``[B]`` times,
    exponential coefficients) goes through these: vectorised float32 exp/log/sqrt kernels differ
    between CPU builds by an ulp, ``1 - exp(2 log alpha)`` near ``t_0`` turns an ulp of exp into
    ~1e-5 relative in ``sigma``/``lambda``, and the adaptive step-size controller (golden case
    b2, first error estimate ~2.5e-5) turns those into different step sizes. Rounding once from
    float64 makes these scalars platform-independent and reproduces the golden times."""
    return _rounded(torch.log, x)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of knots ``(xp, fp)`` (xp increasing) at ``x``; the
    outermost segments are extended linearly outside ``[xp[0], xp[-1]]``."""
    k = xp.shape[0]
    xp, fp = xp.to(x.device), fp.to(x.device)
    idx = torch.searchsorted(xp, x.contiguous(), right=False) - 1
    idx = idx.clamp(0, k - 2)
    xa, xb = xp[idx], xp[idx + 1]
    ya, yb = fp[idx], fp[idx + 1]
    return ya + (x - xa) * (yb - ya) / (xb - xa)


class ContinuousSchedule:
    """Continuous-time view of a discrete schedule (DPM-Solver's discrete ``NoiseScheduleVP``).

    Knots ``t_n = (n+1)/N`` with ``log alpha(t_n) = 0.5 log(abar_n)`` (log taken in the dtype
    of ``alphas_cumprod``, then float32). ``t`` ranges over ``[1/N, 1]``.

    :param alphas_cumprod: ``[N]`` tensor; float32 is the official joint setting. A float16
        table reproduces the official SR defect (``abar_0`` rounds to 1, NaN at the end).
    """

    def __init__(self, alphas_cumprod: Tensor) -> None:
        n = alphas_cumprod.shape[0]
        self.total_n = n
        self.t_array = torch.linspace(0.0, 1.0, n + 1)[1:].to(torch.float32)
        self.log_alpha_array = (0.5 * ieee_log(alphas_cumprod)).to(torch.float32)
        self.t_T = 1.0
        self.t_0 = 1.0 / n

    def log_alpha(self, t: Tensor) -> Tensor:
        return _interp(t, self.t_array, self.log_alpha_array)

    def alpha(self, t: Tensor) -> Tensor:
        return ieee_exp(self.log_alpha(t))

    def sigma(self, t: Tensor) -> Tensor:
        return ieee_sqrt(1.0 - ieee_exp(2.0 * self.log_alpha(t)))

    def lam(self, t: Tensor) -> Tensor:
        la = self.log_alpha(t)
        return la - 0.5 * ieee_log(1.0 - ieee_exp(2.0 * la))

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        zero = torch.zeros((1,), dtype=lam.dtype, device=lam.device)
        la = -0.5 * torch.logaddexp(zero, -2.0 * lam)
        return _interp(la, torch.flip(self.log_alpha_array, [0]), torch.flip(self.t_array, [0]))

    def model_time(self, t: Tensor) -> Tensor:
        """The network timestep at continuous ``t``: int32 truncate((t - 1/N) N)."""
        return ((t - 1.0 / self.total_n) * float(self.total_n)).to(torch.int32)

"""DPM-Solver time grids and methods: singlestep, multistep, adaptive.

No final denoising step (the official default): the result is the ODE solution at
``t_0 = 1/N`` (sigma ~ 0.01), not clipped.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from model.samplers.common import Callback, notify
from model.samplers.dpm_solver import Solver
from model.schedule import ContinuousSchedule, ieee_sqrt
from model.state import State, batch_size, leaves, tmap

SkipType = Literal["logSNR", "time_uniform", "time_quadratic"]


def time_grid(ns: ContinuousSchedule, skip_type: SkipType, steps: int) -> Tensor:
    """``steps + 1`` float32 times from ``t_T = 1`` down to ``t_0 = 1/N``."""
    t_T, t_0 = ns.t_T, ns.t_0
    if skip_type == "logSNR":
        lam_T = ns.lam(torch.tensor(t_T, dtype=torch.float32)).item()
        lam_0 = ns.lam(torch.tensor(t_0, dtype=torch.float32)).item()
        return ns.inverse_lambda(torch.linspace(lam_T, lam_0, steps + 1))
    if skip_type == "time_uniform":
        return torch.linspace(t_T, t_0, steps + 1)
    if skip_type == "time_quadratic":
        return torch.linspace(t_T**0.5, t_0**0.5, steps + 1).pow(2)
    raise ValueError(
        f"skip_type {skip_type!r} is unknown; expected logSNR, time_uniform or time_quadratic"
    )


def singlestep_orders(steps: int, order: int) -> list[int]:
    """Per-step orders summing to ``steps`` (official: 20 steps, order 3 -> [3]*6 + [2])."""
    if order == 3:
        k = steps // 3 + 1
        if steps % 3 == 0:
            return [3] * (k - 2) + [2, 1]
        if steps % 3 == 1:
            return [3] * (k - 1) + [1]
        return [3] * (k - 1) + [2]
    if order == 2:
        return [2] * (steps // 2) + ([1] if steps % 2 else [])
    return [1] * steps


def _vec(t: Tensor, x: State) -> Tensor:
    return t.reshape(()).expand(batch_size(x)).to(leaves(x)[0].device)


def singlestep(
    solver: Solver, x: State, *, steps: int, order: int, skip_type: SkipType,
    callback: Callback | None = None,
) -> State:
    """Official joint sampler (20 steps, order 3, logSNR: 7 updates, NFE 20)."""
    grid = time_grid(solver.ns, skip_type, steps)
    lam = solver.ns.lam(grid)
    orders = singlestep_orders(steps, order)
    i = 0
    for j, o in enumerate(orders):
        s, t = _vec(grid[i], x), _vec(grid[i + o], x)
        h = lam[i + o] - lam[i]
        m_s = solver.model(x, s)
        if o == 1:
            x = solver.first_order(x, s, t, m_s)
        elif o == 2:
            x, _ = solver.singlestep_second(x, s, t, (lam[i + 1] - lam[i]) / h, m_s)
        else:
            r1, r2 = (lam[i + 1] - lam[i]) / h, (lam[i + 2] - lam[i]) / h
            x = solver.singlestep_third(x, s, t, r1, r2, m_s)
        i += o
        notify(callback, j + 1, len(orders), x)
    return x


def multistep(
    solver: Solver, x: State, *, steps: int, order: int, skip_type: SkipType,
    callback: Callback | None = None,
) -> State:
    """Multistep: lower-order warm-up steps, then order ``order``; NFE = ``steps``."""
    if steps < order:
        raise ValueError(f"multistep order {order} needs steps >= {order}, got {steps}")
    grid = time_grid(solver.ns, skip_type, steps)
    ts = [_vec(grid[0], x)]
    ms = [solver.model(x, ts[0])]
    for k in range(1, steps + 1):
        t = _vec(grid[k], x)
        o = min(order, k)
        if o == 1:
            x = solver.first_order(x, ts[-1], t, ms[-1])
        elif o == 2:
            x = solver.multistep_second(x, ts, ms, t)
        else:
            x = solver.multistep_third(x, ts, ms, t)
        ts, ms = ts[-(order - 1):] if order > 1 else [], ms[-(order - 1):] if order > 1 else []
        ts.append(t)
        if k < steps:
            ms.append(solver.model(x, t))
        notify(callback, k, steps, x)
    return x


def adaptive(
    solver: Solver, x: State, *, order: int = 2, h_init: float = 0.05, atol: float = 0.0078,
    rtol: float = 0.05, theta: float = 0.9, t_err: float = 1e-5, expected_steps: int = 20,
    callback: Callback | None = None,
) -> State:
    """Adaptive DPM-Solver-12 (order 2; official 'dpm_solver++' joint variant). Two network
    calls per iteration, accepted or rejected. ``callback`` gets the accepted-step count and a
    running estimate of the total (``expected_steps`` at first, revised upwards; the last call
    has ``step == total``)."""
    if order != 2:
        raise ValueError(f"adaptive DPM-Solver supports order 2 only, got {order}")
    ns = solver.ns
    t_0 = ns.t_0
    s = torch.full((batch_size(x),), ns.t_T, device=leaves(x)[0].device)
    lam_s = ns.lam(s)
    lam_0 = ns.lam(t_0 * torch.ones_like(s))
    h = h_init * torch.ones_like(s)
    x_prev = x
    accepted, total = 0, expected_steps
    while torch.abs(s - t_0).mean() > t_err:
        t = ns.inverse_lambda(lam_s + h)
        m_s = solver.model(x, s)
        x_low = solver.first_order(x, s, t, m_s)
        x_high, _ = solver.singlestep_second(x, s, t, 0.5, m_s)

        def err(hi: Tensor, lo: Tensor, prev: Tensor) -> Tensor:
            floor = torch.ones_like(lo) * atol
            delta = torch.maximum(floor, rtol * torch.maximum(lo.abs(), prev.abs()))
            v = ((hi - lo) / delta).reshape(hi.shape[0], -1)
            return ieee_sqrt(torch.square(v).mean(dim=-1, keepdim=True)).max()

        e = torch.stack(list(leaves(tmap(err, x_high, x_low, x_prev)))).max()
        if torch.all(e <= 1.0):
            x, s, x_prev = x_high, t, x_low
            lam_s = ns.lam(s)
            accepted += 1
            done = not bool(torch.abs(s - t_0).mean() > t_err)
            total = accepted if done else max(total, accepted + 1)
            notify(callback, accepted, total, x)
        h = torch.min(theta * h * torch.float_power(e, -1.0 / order).float(), lam_0 - lam_s)
    return x

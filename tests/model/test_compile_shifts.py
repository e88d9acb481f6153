"""``MMD_COMPILE`` on the base U-Net: one graph for every random window shift.

The shifts of a forward are drawn eagerly (``AVUNet.forward``) and handed to the compiled
network (``AVUNet._network``) as an ``int64 [calls, B]`` tensor, so dynamo traces once and never
recompiles for a new shift value (as Python ints: 44 frames / 34 graphs on the tiny model, then
eager fallback). Cheap: the ``aot_eager`` backend traces without inductor's code generation
(the inductor compile is ``test_speed_paths.py``'s MMD_RUN_SLOW test). Outputs are compared with
an eager twin (same weights, same shifts) at 1e-5 (measured: 3.1e-6 max abs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from torch._dynamo.utils import counters

from model import build_unet
from model.attention import CrossAttention, shift_table
from model.config import UNetConfig
from model.speed import SpeedOptions, apply_speed

CPU = torch.device("cpu")
CFG = UNetConfig.preset("tiny")
TOL = 1e-5


def _model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_unet(CFG).eval()


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[torch.nn.Module, torch.nn.Module]]:
    """(eager, compiled) twins with the same weights; dynamo state reset around the module."""
    torch._dynamo.reset()
    counters.clear()
    eager, compiled = _model(), _model()
    apply_speed(compiled, SpeedOptions(compile=True, compile_backend="aot_eager"), device=CPU)
    yield eager, compiled
    torch._dynamo.reset()


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(batch, *CFG.video_size, generator=g)
    audio = torch.randn(batch, *CFG.audio_size, generator=g)
    return video, audio, torch.tensor([900.0, 30.0][:batch])


def _run(model: torch.nn.Module, **kwargs: object) -> tuple[torch.Tensor, list]:
    with torch.inference_mode():
        v, a = model(*_inputs(), **kwargs)
    return torch.cat([v.flatten(), a.flatten()]), list(model.last_window_shifts)


def _assert_one_graph() -> None:
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert counters["frames"]["total"] == 1, dict(counters["frames"])  # no recompile
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_random_shifts_compile_one_graph_and_match_eager(pair):
    eager, compiled = pair
    assert compiled.shifts_as_table and not eager.shifts_as_table
    seen = []
    for seed in (0, 1, 2):
        ref, ref_shifts = _run(eager, generator=torch.Generator().manual_seed(seed))
        out, shifts = _run(compiled, generator=torch.Generator().manual_seed(seed))
        assert shifts == ref_shifts  # same draws from the generator, same record
        assert torch.allclose(out, ref, rtol=0, atol=TOL), (out - ref).abs().max()
        seen.append(shifts)
    assert len({tuple(s) for s in seen}) == 3  # really different shifts each forward
    _assert_one_graph()


def test_window_shifts_replay_compiled(pair):
    eager, compiled = pair
    _, drawn = _run(eager, generator=torch.Generator().manual_seed(7))
    ref, _ = _run(eager, window_shifts=drawn)
    out, used = _run(compiled, window_shifts=drawn)
    assert used == drawn
    assert torch.allclose(out, ref, rtol=0, atol=TOL), (out - ref).abs().max()
    bad = list(drawn)
    bad[0] = 99
    with pytest.raises(ValueError, match=r"window_shifts\[0\] = 99"):
        _run(compiled, window_shifts=bad)
    _assert_one_graph()


def test_per_sample_shift_groups_compiled(pair):
    eager, compiled = pair

    def groups() -> list[tuple[torch.Generator, int]]:
        return [(torch.Generator().manual_seed(3), 1), (torch.Generator().manual_seed(4), 1)]

    ref, ref_shifts = _run(eager, shift_groups=groups())
    out, shifts = _run(compiled, shift_groups=groups())
    assert shifts == ref_shifts
    assert any(isinstance(s, list) for s in shifts)  # some call had per-sample shifts
    assert torch.allclose(out, ref, rtol=0, atol=TOL), (out - ref).abs().max()
    _assert_one_graph()


def test_cross_attention_table_row_equals_int_shift():
    """A table row (the compiled path's per-sample gather) gives the int path's result."""
    torch.manual_seed(0)
    mod = CrossAttention(64, 4, 2, shift=True, name="t").eval()
    video, audio = torch.randn(2, 4, 64, 4, 4), torch.randn(2, 64, 20)
    mod.call_index = 1
    table = shift_table([0, 1], 2, CPU)
    assert table.tolist() == [[0, 0], [1, 1]]
    with torch.inference_mode():
        ref = mod(video, audio, [0, 1])  # call_index 1: shift 1, as an int
        out = mod(video, audio, table)
    for o, r in zip(out, ref, strict=False):
        assert torch.allclose(o, r, rtol=0, atol=TOL), (o - r).abs().max()


def test_shift_table_layout():
    per_sample = torch.tensor([2, 2, 5])
    table = shift_table([3, per_sample, 0], 3, CPU)
    assert table.dtype == torch.int64 and table.shape == (3, 3)
    assert table.tolist() == [[3, 3, 3], [2, 2, 5], [0, 0, 0]]
    assert shift_table([], 2, CPU).shape == (0, 2)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MMD_RUN_SLOW"),
                    reason="inductor compile of the tiny base U-Net took 500 s on 2 shared "
                           "CPU cores; set MMD_RUN_SLOW=1 to run it")
def test_inductor_compiled_base_one_graph_for_new_shifts():
    torch._dynamo.reset()
    counters.clear()
    eager, compiled = _model(), _model()
    apply_speed(compiled, SpeedOptions(compile=True), device=CPU)
    try:
        for seed in (0, 1):
            ref, ref_shifts = _run(eager, generator=torch.Generator().manual_seed(seed))
            out, shifts = _run(compiled, generator=torch.Generator().manual_seed(seed))
            assert shifts == ref_shifts
            assert torch.allclose(out, ref, rtol=0, atol=3e-5), (out - ref).abs().max()
        _assert_one_graph()
    finally:
        torch._dynamo.reset()


def test_cuda_graphs_wrapper_compiles_the_network_with_shift_tables(monkeypatch):
    """``MMD_CUDA_GRAPHS``'s wrapper gets the same treatment; CPU stand-in: its
    ``torch.compile(mode="reduce-overhead")`` call goes to the ``eager`` backend instead."""
    from model import speed

    real = torch.compile
    modes = []

    def fake(fn, *, mode=None, dynamic=None):
        modes.append(mode)
        return real(fn, backend="eager", dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", fake)
    torch._dynamo.reset()
    counters.clear()
    eager, wrapped = _model(), _model()
    speed._compile_with_cuda_graphs(wrapped, True)
    assert modes == ["reduce-overhead"] and wrapped.shifts_as_table
    try:
        for seed in (0, 1):
            ref, ref_shifts = _run(eager, generator=torch.Generator().manual_seed(seed))
            out, shifts = _run(wrapped, generator=torch.Generator().manual_seed(seed))
            assert shifts == ref_shifts
            assert torch.allclose(out, ref, rtol=0, atol=TOL), (out - ref).abs().max()
        _assert_one_graph()
    finally:
        torch._dynamo.reset()

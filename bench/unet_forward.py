"""Time one forward of the official base U-Net (batch 1) and one SR frame forward (1x3x256x256).

    python3 bench/unet_forward.py                      # CPU fp32, 2 threads, optimised + plain
    python3 bench/unet_forward.py --no-plain           # optimised only
    python3 bench/unet_forward.py --device cuda --precision fp16

Random weights (timing does not depend on values). FLOPs are counted analytically on the meta
device with ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOP). "plain" is
math attention (``SDPBackend.MATH``), fp32, NCHW weights, no compile; "optimised" is the model as
built with the worker's default ``SpeedOptions`` (fused SDPA kernels - flash on CPU -,
channels-last SR convolutions) in the requested precision. Both modes are built once, warmed up
once, then timed interleaved (plain and optimised alternate, ``--repeats`` each) so that load
from other processes on a shared machine hits both alike; the table shows medians, the load
average is printed before and after, and the last lines give optimised/plain of the medians,
of the minima and of the process CPU seconds. On a loaded machine wall times at 2 threads swing
2-4x (OpenMP threads wait for each other); ``--threads 1`` CPU seconds measure the work itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.forward_cases import ForwardCase, sync
from bench.forward_cases import count_flops as _count_flops
from model.attention import set_sdpa_backend
from model.precision import apply_precision, dtype_of
from model.speed import PLAIN, SpeedOptions, apply_speed

REFERENCE_S = {"base": 62.0, "sr": 25.0}  # official code, CPU fp32 2 threads (issue 2)


PRESET = {"unet": "landscape", "sr": "official"}  # --tiny switches both to "tiny" (smoke test)


def make_case(name: str, device: str) -> tuple[torch.nn.Module, Callable[[], object]]:
    """Model on ``device`` and a closure running one forward with fixed inputs."""
    case = ForwardCase.build(name, PRESET["unet" if name == "base" else "sr"], device)
    return case.model, case.run


def count_flops(name: str) -> float:
    return _count_flops(name, PRESET["unet" if name == "base" else "sr"])


@contextlib.contextmanager
def mode(plain: bool) -> Iterator[None]:
    if plain:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    else:
        yield


class Case:
    """One network in one mode (optimised / plain), built once; ``run()`` times one forward."""

    def __init__(self, name: str, args: argparse.Namespace, plain: bool) -> None:
        self.model, self._run = make_case(name, args.device)
        self.plain, self.device = plain, args.device
        self.precision = "fp32" if plain else args.precision
        apply_precision(self.model, self.precision)
        if plain:  # what the official code computes: NCHW, math attention, fp32, eager
            self.options = PLAIN
        elif args.channels_last:
            self.options = SpeedOptions(channels_last=True, channels_last_base=True)
        else:  # the worker's default speed options (channels-last SR, NCHW base, fused attention)
            self.options = SpeedOptions()
        apply_speed(self.model, self.options, device=torch.device(args.device))
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU seconds: robust to other load at 1 thread

    def run(self, record: bool = True) -> float:
        set_sdpa_backend(self.options.sdpa_backend)  # process-wide: set before every run
        with torch.inference_mode(), mode(self.plain):
            t0, c0 = time.perf_counter(), time.process_time()
            self._run()
            sync(self.device)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        if record:
            self.times.append(sec)
            self.cpu_times.append(cpu)
        return sec

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)


def time_cases(name: str, args: argparse.Namespace, modes: list[str]) -> dict[str, Case]:
    """Build every mode of ``name``, warm each up once, then time them INTERLEAVED (plain,
    optimised, plain, ...) so that load from other processes hits both alike."""
    cases = {m: Case(name, args, plain=(m == "plain")) for m in modes}
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    if args.warmup:  # first call: oneDNN primitive creation, allocator growth, page faults
        for case in cases.values():
            case.run(record=False)
    for _ in range(args.repeats):
        for case in cases.values():
            case.run()
    if args.device.startswith("cuda"):  # what the worker exports as mmd_peak_memory_bytes
        print(f"{name}: peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB "
              "(all modes)", flush=True)
    return cases


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per mode (median)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed first forward of each mode")
    p.add_argument("--cases", default="base,sr")
    p.add_argument("--plain", action="store_true", help="run only the plain mode")
    p.add_argument("--no-plain", action="store_true", help="skip the plain comparison run")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last weights in both networks in the optimised run")
    p.add_argument("--tiny", action="store_true", help="tiny presets (smoke test of the script)")
    args = p.parse_args()
    if args.tiny:
        PRESET.update(unet="tiny", sr="tiny")
    torch.set_num_threads(args.threads)
    dtype_of(args.precision)
    cases = [c for c in args.cases.split(",") if c]
    both = ["optimised", "plain"]
    modes = ["plain"] if args.plain else (["optimised"] if args.no_plain else both)
    print(f"torch {torch.__version__}, device {args.device}, threads {args.threads}, "
          f"precision {args.precision} (plain: fp32), {args.repeats} interleaved repeats per mode "
          f"(median; warm-up {'on' if args.warmup else 'off'}), load average {_load()}")
    print(f"{'case':<6} {'mode':<10} {'median s':>9} {'min s':>7} {'CPU s':>7} {'TFLOP':>7} "
          f"{'GFLOP/s':>9} {'vs official':>12}")
    medians: dict[tuple[str, str], float] = {}
    mins: dict[tuple[str, str], float] = {}
    cpus: dict[tuple[str, str], float] = {}
    for name in cases:
        flops = count_flops(name)
        for m, case in time_cases(name, args, modes).items():
            sec = medians[(name, m)] = case.median
            mins[(name, m)] = min(case.times)
            on_cpu_full = args.device == "cpu" and not args.tiny
            ref = f"{sec / REFERENCE_S[name]:.2f}x" if on_cpu_full else "-"
            cpus[(name, m)] = case.cpu_median
            print(f"{name:<6} {m:<10} {sec:9.2f} {min(case.times):7.2f} {case.cpu_median:7.2f} "
                  f"{flops / 1e12:7.3f} {flops / sec / 1e9:9.1f} {ref:>12}", flush=True)
    for name in cases:
        if (name, "optimised") in medians and (name, "plain") in medians:
            print(f"{name}: optimised/plain = "
                  f"{medians[(name, 'optimised')] / medians[(name, 'plain')]:.2f} (medians), "
                  f"{mins[(name, 'optimised')] / mins[(name, 'plain')]:.2f} (minima: least "
                  "disturbed by other load), "
                  f"{cpus[(name, 'optimised')] / cpus[(name, 'plain')]:.2f}"
                  " (process CPU seconds; with --threads 1 the work itself, whatever the load)")
    print(f"load average at the end {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One prepared GPU measurement run (issue 15): correctness and speed of every stage on one CUDA
GPU within a time budget, printed as one table and written as JSON (rewritten after every
section, so a run cut short keeps what it measured).

Run on a GPU (expected: about 5.5 min on one H100 = the 300 s default budget + ~30 s of start-up;
an item already running when the budget ends, e.g. an inductor compile, finishes first, so give
the command 8 minutes; ``--budget-s 420`` uses the issue's whole 8 minutes when no rerun has to
fit in the device time):

    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --json out.json
    python3 bench/gpu_check.py --dry-run --json out.json   # CPU, tiny presets: ~40-70 s, CI

The device machine has torch but no PyAV, which only the MP4 step needs (without it that step
is recorded as ``mux_error`` and everything else runs). To carry it (see
/work/.library/device/README.md): here ``echo /.whl/ >> .git/info/exclude; python3 -m pip
download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform
manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0`` (one 35 MB abi3
wheel; the tree is 11 MB of the 64 MiB that travel), then run with
``carry=[".whl"]`` and the command ``python3 -m pip install -q --no-index --no-deps --target
/tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site; PYTHONUNBUFFERED=1 timeout 480 python3
bench/gpu_check.py --json $OUT/gpu_check.json 2>&1 | tee $OUT/log`` and ``timeout_s=540``.

Sections, in the order they run (each guarded: an exception is recorded in its row or section,
and the run goes on; a section that would overrun the budget is recorded as skipped):

* ``parity``: base and SR forward (batch 1, official size, random weights) in fp32, fp16 and
  bf16 on the device against CPU float32: max relative error, count of NaN/inf. (fp32 on CUDA
  uses TF32 convolutions, torch's default.)
* ``jobs``: one joint job (base + SR to 256x256 + MP4 mux) with the fast and with the official
  preset (core/sampling.py's table), one video-to-audio job with gradient
  guidance (``FAST_CONDITIONAL``, SR on): seconds and peak memory per stage, NaN/inf counts.
* ``throughput``: 1, 4 and 8 concurrent fast joint jobs as one batch (``generate_batch``).
* ``forward``: base forward (batch 1) and SR forward (16 frames, per-frame seconds) eager NCHW,
  channels-last, and with each SDPA backend (math, flash, efficient, cudnn).
* ``forward_compiled``: the same with ``torch.compile`` (inductor) and CUDA graphs.
* ``mfu``: SR stage FLOP/s of the joint jobs against the device's dense fp16/bf16 peak
  (``gpu_sections.PEAK_TFLOPS``), FLOPs counted with ``FlopCounterMode``.

Jobs, throughput and timings run in ``--precision`` (default fp16 on CUDA; the dry run fp32)
with the worker's default speed options. ``--dry-run`` runs every section on the CPU with the
tiny presets and the same samplers cut to at most 3 steps, ``compile`` with the trace-only
``eager`` backend; CUDA graphs are skipped there.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gpu_sections as sections
from bench.gpu_sections import Context, Profile, Row, short
from worker.sampling import preset_specs

FAST_BASE, FAST_SR = preset_specs("fast")
OFFICIAL_BASE, OFFICIAL_SR = preset_specs("official")
FAST_CONDITIONAL, _ = preset_specs("fast", "video-to-audio")

# (name, function, share of the budget): a section may use its share plus what earlier ones
# left; it is skipped when less than a quarter of its share is left before it starts.
SECTIONS: tuple[tuple[str, Callable[[Context], list[Row]], float], ...] = (
    ("parity", sections.parity, 0.14),
    ("jobs", sections.jobs, 0.18),
    ("throughput", sections.throughput, 0.14),
    ("forward", sections.forward, 0.16),
    ("forward_compiled", sections.forward_compiled, 0.36),
    ("mfu", sections.mfu, 0.02),
)


def profile(dry_run: bool, precision: str | None) -> Profile:
    if dry_run:
        return Profile(device="cpu", unet="tiny", sr="tiny", precision=precision or "fp32",
                       fast_base=short(FAST_BASE), fast_sr=short(FAST_SR, 2),
                       official_base=short(OFFICIAL_BASE), official_sr=short(OFFICIAL_SR, 2),
                       conditional=short(FAST_CONDITIONAL), sr_batch=4,
                       compile_backend="eager", batches=(1, 4, 8), repeats=2,
                       compile_need_s=1.0)
    return Profile(device="cuda", unet="landscape", sr="official", precision=precision or "fp16",
                   fast_base=FAST_BASE, fast_sr=FAST_SR, official_base=OFFICIAL_BASE,
                   official_sr=OFFICIAL_SR, conditional=FAST_CONDITIONAL, sr_batch=16,
                   compile_backend="inductor", batches=(1, 4, 8), repeats=5,
                   compile_need_s=60.0)


def run(p: Profile, budget_s: float, write: Callable[[dict[str, Any]], None],
        sections: Sequence[tuple[str, Callable[[Context], list[Row]], float]] = SECTIONS,
        ) -> dict[str, Any]:
    """Every section in order within ``budget_s``; ``write(report)`` after each section."""
    start = time.perf_counter()
    end = start + budget_s
    report: dict[str, Any] = {"meta": _meta(p, budget_s), "sections": {}}
    ctx = Context(p, lambda: budget_s)  # models and job rows shared by the sections
    for i, (name, fn, share) in enumerate(sections):
        later = sum(s for _, _, s in sections[i + 1:]) * budget_s
        deadline = end - later
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"status": "ok", "rows": []}
        if deadline - t0 < share * budget_s / 4:
            entry.update(status="skipped", error=f"would overrun: {deadline - t0:.0f} s left of "
                         f"its share {share * budget_s:.0f} s")
        else:
            ctx.time_left = functools.partial(_left, deadline)
            try:
                entry["rows"] = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - recorded; the next section still runs
                entry.update(status="error", error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc(limit=-4))
        entry["seconds"] = time.perf_counter() - t0
        report["sections"][name] = entry
        report["meta"]["elapsed_s"] = time.perf_counter() - start
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']:.1f} s", file=sys.stderr,
              flush=True)
        write(report)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report


def _left(deadline: float) -> float:
    return deadline - time.perf_counter()


def _meta(p: Profile, budget_s: float) -> dict[str, Any]:
    cuda = torch.device(p.device).type == "cuda"
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "precision": p.precision, "presets": f"{p.unet} / {p.sr}", "budget_s": budget_s,
        "threads": torch.get_num_threads(), "dry_run": not cuda,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    """One line per row: section, item, then its figures as ``key=value``."""
    meta = report["meta"]
    lines = [" ".join(f"{k}={_fmt(v)}" for k, v in meta.items()),
             f"{'section':<17} {'item':<26} figures", "-" * 100]
    for name, entry in report["sections"].items():
        if entry["status"] != "ok":
            lines.append(f"{name:<17} {'-':<26} {entry['status'].upper()}: {entry.get('error')}")
        for row in entry["rows"]:
            figures = " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "item")
            lines.append(f"{name:<17} {row.get('item', ''):<26} {figures}")
        lines.append(f"{name:<17} {'(section)':<26} seconds={entry['seconds']:.1f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the report here (after every section)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny presets, short samplers")
    ap.add_argument("--budget-s", type=float, help="seconds for all sections (default: 300 on "
                    "CUDA, 150 in the dry run)")
    ap.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                    help="jobs and timings (default: fp16 on CUDA, fp32 in the dry run)")
    ap.add_argument("--only", help="comma-separated sections to run (a rerun of what failed), "
                    f"of {','.join(n for n, _, _ in SECTIONS)}; their shares of the budget "
                    "scale up")
    ap.add_argument("--threads", type=int, help="CPU threads (default: 1 in the dry run, all "
                    "cores for the CPU references on CUDA)")
    args = ap.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine, or pass --dry-run to check the script "
              "on the CPU", file=sys.stderr)
        return 2
    # dry run: 1 thread (2 threads on a shared, loaded 2-core machine ran 3x slower: OpenMP
    # threads waiting for each other)
    torch.set_num_threads(args.threads or (1 if args.dry_run else os.cpu_count() or 1))
    p = profile(args.dry_run, args.precision)
    budget = args.budget_s or (150.0 if args.dry_run else 300.0)

    def write(report: dict[str, Any]) -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=1, default=str))

    chosen = SECTIONS
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {n for n, _, _ in SECTIONS})
        if unknown:
            ap.error(f"unknown sections {unknown}; expected some of "
                     f"{','.join(n for n, _, _ in SECTIONS)}")
        total = sum(share for n, _, share in SECTIONS if n in names)
        chosen = tuple((n, fn, share / total) for n, fn, share in SECTIONS if n in names)
    report = run(p, budget, write, chosen)
    print(table(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU profile of one base U-Net forward at the official config (torch.profiler top-ops table).

    python3 bench/profile_base.py                 # landscape preset, fp32, 2 threads, ours
    python3 bench/profile_base.py --plain         # the plain path (math attention, NCHW)
    python3 bench/profile_base.py --both          # ours, then plain, same process
    python3 bench/profile_base.py --shapes        # also group by input shapes (what to fix)
    python3 bench/profile_base.py --tiny --rows 10

Random weights (time does not depend on values), fixed unshifted windows. "ours" is the model
with the worker's default ``SpeedOptions``; "plain" is ``model.speed.PLAIN`` (what the official
code computes). One untimed warm-up forward first (oneDNN primitive creation, allocator growth,
first-touch page faults), then one profiled forward. Prints the operators sorted by self CPU
time, which says where a forward's time goes (convolutions vs GEMMs vs attention vs norms vs
copies), and the shares of a few operator families.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import build_unet
from model.attention import set_sdpa_backend
from model.config import UNetConfig
from model.speed import PLAIN, SpeedOptions, apply_speed

# operator families whose share of self CPU time is summarised under the table
FAMILIES = {
    "conv (oneDNN)": ("aten::mkldnn_convolution", "aten::convolution"),
    "GEMM": ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm",
             "aten::baddbmm_"),
    "attention kernels": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                          "aten::_softmax", "aten::softmax"),
    "copies / layout": ("aten::copy_", "aten::cat", "aten::index", "aten::clone",
                        "aten::contiguous", "aten::upsample_nearest2d"),
    "norm statistics": ("aten::var_mean", "aten::sum", "aten::linalg_vector_norm",
                        "aten::native_group_norm"),
    "elementwise": ("aten::add", "aten::add_", "aten::addcmul", "aten::silu", "aten::silu_",
                    "aten::mul", "aten::sub", "aten::div"),
}


def profile_forward(plain: bool, args: argparse.Namespace) -> None:
    cfg = UNetConfig.preset("tiny" if args.tiny else "landscape")
    model = build_unet(cfg)
    options = PLAIN if plain else SpeedOptions()
    apply_speed(model, options, device=torch.device("cpu"))
    set_sdpa_backend(options.sdpa_backend)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(1, *cfg.video_size, generator=gen)
    audio = torch.randn(1, *cfg.audio_size, generator=gen)
    t = torch.tensor([500.0])
    shifts = [0] * model.num_cross_calls
    kernels = sdpa_kernel([SDPBackend.MATH]) if plain else contextlib.nullcontext()
    with torch.inference_mode(), kernels:
        model(video, audio, t, window_shifts=shifts)  # warm-up
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            t0 = time.perf_counter()
            model(video, audio, t, window_shifts=shifts)
            sec = time.perf_counter() - t0
    name = "plain" if plain else "ours"
    print(f"== {name}: {sec:.2f} s for the profiled forward (load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events)
    shares = {fam: sum(e.self_cpu_time_total for e in events if e.key in ops) / total
              for fam, ops in FAMILIES.items()}
    shares["other"] = 1 - sum(shares.values())
    print(f"{name} self CPU shares: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    # whole attention calls, whatever kernel ran inside (math: bmm + softmax + masking + copies)
    sdpa = sum(e.cpu_time_total for e in events if e.key == "aten::scaled_dot_product_attention")
    print(f"{name} attention (scaled_dot_product_attention, inclusive): {sdpa / 1e6:.2f} s = "
          f"{sdpa / total:.1%} of self CPU time {total / 1e6:.2f} s")
    if args.shapes:
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40,
            max_shapes_column_width=90))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--plain", action="store_true", help="profile the plain path instead")
    p.add_argument("--both", action="store_true", help="profile ours, then the plain path")
    p.add_argument("--shapes", action="store_true", help="also a table grouped by input shapes")
    p.add_argument("--tiny", action="store_true", help="tiny preset (smoke test of the script)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    modes = [False, True] if args.both else [args.plain]
    for plain in modes:
        profile_forward(plain, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU profile of one base U-Net forward at the official config (torch.profiler top-ops table).

    python3 bench/profile_base.py                 # landscape preset, fp32, 2 threads
    python3 bench/profile_base.py --tiny --rows 10

Random weights (time does not depend on values). Prints the operators sorted by self CPU time,
which says where a forward's time goes (convolutions vs attention vs norms vs copies).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import build_unet  # noqa: E402
from model.config import UNetConfig  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--tiny", action="store_true", help="tiny preset (smoke test of the script)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = UNetConfig.preset("tiny" if args.tiny else "landscape")
    model = build_unet(cfg)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(1, *cfg.video_size, generator=gen)
    audio = torch.randn(1, *cfg.audio_size, generator=gen)
    t = torch.tensor([500.0])
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(video, audio, t, generator=gen)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

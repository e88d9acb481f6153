"""Cost of one ImageBind aligner evaluation: score(video, audio, prompt) and its backward to the
inputs, as the prompt guidance runs it once per network evaluation.

    python3 bench/imagebind_cost.py                         # CPU, imagebind_huge width
    python3 bench/imagebind_cost.py --device cuda --batch 4 --repeats 5
    python3 bench/imagebind_cost.py --tiny                  # smoke test of the script

The architecture is the package's ``ImageBindModel`` at the width of the released
``imagebind_huge`` (vision ViT-H/14 1280 x 32, audio 768 x 12, text 1024 x 24), randomly
initialised (cost does not depend on the values; depth, thermal and IMU are built tiny because
the aligner drops them). Inputs: the official geometry, 16 frames of 64 x 64 and 25,600 samples
at 16 kHz. FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the first run
(one multiply-add = 2 FLOP; the backward computes input gradients only, the weights are
frozen), split into the video and audio branches; the text embedding is computed once per
prompt and is counted apart. Times are medians over ``--repeats`` after that first run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.aligners.imagebind import DEFAULT_VIDEO_CLIPS, ImageBindAligner
from model.aligners.imagebind_pkg import (
    IMAGEBIND_HUGE,
    Tokenizer,
    build_imagebind,
    drop_unused_modalities,
)
from model.config import UNetConfig

UNUSED_TINY = {
    "depth_embed_dim": 16, "depth_num_blocks": 1, "depth_num_heads": 2,
    "thermal_embed_dim": 16, "thermal_num_blocks": 1, "thermal_num_heads": 2,
    "imu_embed_dim": 16, "imu_num_blocks": 1, "imu_num_heads": 2,
}
TINY = {
    **UNUSED_TINY, "out_embed_dim": 16,
    "vision_embed_dim": 32, "vision_num_blocks": 2, "vision_num_heads": 2,
    "text_embed_dim": 32, "text_num_blocks": 2, "text_num_heads": 2,
    "audio_embed_dim": 32, "audio_num_blocks": 2, "audio_num_heads": 2,
}
PROMPT = "waves crashing on a beach"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def counted(fn: object) -> float:
    """GFLOP of ``fn()`` (forward and backward, as ``fn`` runs them)."""
    with FlopCounterMode(display=False) as counter:
        fn()  # type: ignore[operator]
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--clips", type=int, default=DEFAULT_VIDEO_CLIPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="toy width (checks the script)")
    args = parser.parse_args()
    device = args.device
    cfg = UNetConfig.preset("landscape")
    arch = TINY if args.tiny else {**IMAGEBIND_HUGE, **UNUSED_TINY}

    start = time.perf_counter()
    with torch.device(device):
        model = build_imagebind(arch)
    drop_unused_modalities(model)
    aligner = ImageBindAligner(model, Tokenizer(), sample_rate=cfg.sample_rate,
                               video_clips=args.clips)
    params = sum(p.numel() for p in model.parameters())
    print(f"built {params / 1e6:.1f} M parameters on {device} in "
          f"{time.perf_counter() - start:.1f} s")

    gen = torch.Generator().manual_seed(0)
    video = (torch.rand(args.batch, *cfg.video_size, generator=gen) * 2 - 1).to(device)
    audio = (torch.rand(args.batch, *cfg.audio_size, generator=gen) - 0.5).to(device)

    def branch(embed: str, x: torch.Tensor) -> None:
        x = x.detach().requires_grad_()
        getattr(aligner, embed)(x).sum().backward()

    def evaluation() -> None:
        v, a = video.detach().requires_grad_(), audio.detach().requires_grad_()
        aligner.score(v, a, PROMPT).sum().backward()

    text = counted(lambda: aligner.text_embedding(PROMPT))
    vis = counted(lambda: branch("embed_video", video))
    aud = counted(lambda: branch("embed_audio", audio))
    evaluation()  # warm-up
    times = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        evaluation()
        sync(device)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"batch {args.batch}, {args.clips} video clips of 2 frames, one 1.6 s audio clip")
    print(f"GFLOP per evaluation (forward + input backward): video {vis:.2f}, audio {aud:.2f}, "
          f"total {vis + aud:.2f} ({(vis + aud) / args.batch:.2f} per clip); text once per "
          f"prompt {text:.2f}")
    print(f"time per evaluation: median {median * 1e3:.1f} ms over {args.repeats} "
          f"(min {min(times) * 1e3:.1f}), {(vis + aud) / median / 1e3:.2f} TFLOP/s")
    if device.startswith("cuda"):
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
              f"({torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()

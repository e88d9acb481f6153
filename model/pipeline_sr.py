"""The pipeline's super-resolution stage: every base frame upsampled by the SR U-Net, the
frames of all jobs flattened ``(n f)`` and processed a bounded number of frames per call."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from model.pipeline_noise import cpu_generator, cpu_noise, derive_seed, no_noise
from model.pipeline_types import GenerationRequest, LoadedModels, Progress
from model.samplers import count_nfe, sample_sr, shared_clip_noise


def sr_stage(
    requests: Sequence[GenerationRequest], models: LoadedModels, video: Tensor,
    mains: Sequence[torch.Generator], progress: Progress | None,
) -> tuple[Tensor, int, int]:
    """Upsample every frame of ``video [N, F, 3, h, w]`` -> ``[N, F, 3, h*s, w*s]`` with
    ``s = large_size / small_size`` of the SR config; returns it, SR steps per frame, SR calls."""
    assert models.sr is not None and models.sr_cfg is not None
    sr_cfg = models.sr_cfg
    if sr_cfg.large_size % sr_cfg.small_size:
        raise ValueError(
            f"SR config large_size {sr_cfg.large_size} is not a multiple of small_size "
            f"{sr_cfg.small_size}; use an SR preset with an integer upsampling factor"
        )
    factor = sr_cfg.large_size // sr_cfg.small_size
    n, f, c, h, w = video.shape
    low_res = video.reshape(n * f, c, h, w)
    request = requests[0]
    x_T = torch.cat([  # each job's clip noise from its own main generator, after its x_T
        shared_clip_noise(r.num_samples, f, (c, h * factor, w * factor), generator=g)
        for r, g in zip(requests, mains, strict=True)
    ]).to(models.device)
    sr_net = models.sr

    def eps(x: Tensor, t: Tensor, low_res: Tensor) -> Tensor:
        return sr_net(x, t.to(torch.float32), low_res).float()

    counter = count_nfe(eps)
    if len(requests) == 1:
        noise = cpu_noise(cpu_generator(derive_seed(request.seed, "sr-sampler")))
    else:  # batch_key() keeps stochastic SR samplers out of batches
        noise = no_noise
    chunk = models.sr_batch_frames or request.sr_chunk_frames
    starts = list(range(0, n * f, chunk))
    done_steps = 0  # steps of finished chunks, for one overall progress bar
    outputs: list[Tensor] = []
    per_frame_nfe = 0
    for index, begin in enumerate(starts):
        chunk_total = [0]

        def track(step: int, total: int, state: object, _done: int = done_steps,
                  _left: int = len(starts) - index, _total: list[int] = chunk_total) -> None:
            # Overall SR progress: finished chunks + this chunk, remaining chunks at this total.
            _total[0] = total
            if progress is not None:
                progress("sr", _done + step, _done + total * _left)

        calls_before = counter.forward
        with torch.no_grad():
            part = sample_sr(
                counter, x_T[begin : begin + chunk], request.sr_sampler,
                low_res=low_res[begin : begin + chunk], callback=track, noise_fn=noise,
                prediction=sr_cfg.prediction,
            )
        outputs.append(part)
        done_steps += chunk_total[0]
        per_frame_nfe = counter.forward - calls_before
    high = torch.cat(outputs).reshape(n, f, c, h * factor, w * factor)
    return high, per_frame_nfe, counter.forward

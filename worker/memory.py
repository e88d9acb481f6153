"""Estimated activation memory of a batch, and the check that refuses a batch over
``MMD_BATCH_MEMORY_MB`` naming the stage and the setting to change."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.config import SRConfig
    from model.pipeline import LoadedModels


def estimate_stage_bytes(models: LoadedModels, samples: int, *, sr: bool = True) -> dict[str, int]:
    """Rough peak activation memory per stage of a batch of ``samples`` samples, fp32 (an upper
    bound at fp16 / bf16), on top of the weights.

    * ``base``: per sample, fp32 activations of ``model_channels x (video elements F*H*W + audio
      length)`` kept for every resolution level and residual block (skip connections), times 2
      for transient buffers. Landscape: 1068 MiB a sample; measured on CPU (fused attention)
      690 MiB peak RSS growth a sample.
    * ``sr`` (with ``sr`` and an SR network): the batch's frames are flattened and upsampled
      ``MMD_SR_MAX_BATCH_FRAMES`` at a time, so one chunk of ``min(MMD_SR_MAX_BATCH_FRAMES,
      samples x F)`` frames; per frame the skip tensors of every level plus 8 x the top level's
      tensor for transient buffers. Official 256x256: 586 MiB a frame; measured on CPU
      507 / 539 MiB a frame peak RSS growth for 1 / 2 frames (fresh processes).
    """
    cfg = models.unet_cfg
    frames, _, height, width = cfg.video_size
    tokens = frames * height * width + cfg.audio_size[1]
    levels = (cfg.num_res_blocks + 1) * len(cfg.channel_mult)
    per_sample = 4 * cfg.model_channels * tokens * levels * 2
    out = {"base": samples * per_sample}
    if sr and models.sr is not None and models.sr_cfg is not None:
        out["sr"] = sr_chunk_frames(models, samples) * 4 * _sr_frame_elements(models.sr_cfg)
    return out


def sr_chunk_frames(models: LoadedModels, samples: int) -> int:
    """Frames of the largest SR network call of a batch of ``samples`` samples."""
    from model.pipeline import GenerationRequest

    chunk = models.sr_batch_frames or GenerationRequest().sr_chunk_frames
    return min(chunk, samples * models.unet_cfg.video_size[0])


def _sr_frame_elements(cfg: SRConfig) -> int:
    """Activation elements of one SR forward per frame: the skips of the down path (input conv,
    ``num_res_blocks`` per level, a downsample per level but the last) + 8 x the widest tensor."""
    sizes = [(cfg.model_channels * m, (cfg.large_size >> level) ** 2)
             for level, m in enumerate(cfg.channel_mult)]
    skips = sizes[0][0] * sizes[0][1]
    for level, (channels, pixels) in enumerate(sizes):
        skips += cfg.num_res_blocks * channels * pixels
        if level + 1 < len(sizes):
            skips += channels * sizes[level + 1][1]
    return skips + 8 * max(c * p for c, p in sizes)


def estimate_batch_bytes(models: LoadedModels, samples: int, *, sr: bool = True) -> int:
    """The larger of :func:`estimate_stage_bytes` (the stages run one after the other)."""
    return max(estimate_stage_bytes(models, samples, sr=sr).values())


def batch_too_large(models: LoadedModels, jobs: int, samples: int, *, sr: bool,
                    memory_mb: int) -> str | None:
    """Why a batch of ``jobs`` jobs (``samples`` samples together) does not fit ``memory_mb``
    MiB (``MMD_BATCH_MEMORY_MB``), or None when it fits."""
    stages = estimate_stage_bytes(models, samples, sr=sr)
    stage = max(stages, key=lambda k: stages[k])
    if stages[stage] <= memory_mb * 2**20:
        return None
    what = ("its base stage" if stage == "base" else
            f"its SR stage ({sr_chunk_frames(models, samples)} frames a call)")
    return (f"a batch of {jobs} jobs ({samples} samples) needs about {stages[stage] // 2**20} MiB "
            f"in {what} > MMD_BATCH_MEMORY_MB={memory_mb}; lower MMD_MAX_BATCH"
            + (" or MMD_SR_MAX_BATCH_FRAMES" if stage == "sr" else "")
            + " or raise MMD_BATCH_MEMORY_MB")

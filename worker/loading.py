"""Loading every configured model once per worker, and a short warm-up generation."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from core.settings import ModelSpec, Settings
from worker import metrics

log = logging.getLogger(__name__)


def speed_options(settings: Settings) -> Any:
    """``model.speed.SpeedOptions`` from ``MMD_CHANNELS_LAST(_BASE)`` / ``MMD_SDPA_BACKEND`` /
    ``MMD_COMPILE`` / ``MMD_CUDA_GRAPHS``."""
    from model.speed import SpeedOptions

    return SpeedOptions(channels_last=settings.channels_last,
                        channels_last_base=settings.channels_last_base,
                        sdpa_backend=settings.sdpa_backend,
                        compile=settings.compile, cuda_graphs=settings.cuda_graphs)


def load_all(settings: Settings) -> dict[str, Any]:
    """``{name: LoadedModels}`` for every entry of ``MMD_MODELS`` on ``MMD_DEVICE`` /
    ``MMD_PRECISION``. A ``demo`` model without a checkpoint runs the shipped weights
    (``MMD_DEMO_WEIGHTS_DIR``, sha256 checked); other models without a checkpoint are randomly
    initialised (logged loudly). A model with a prompt aligner (``ModelSpec.aligner``) gets it
    as ``LoadedModels.aligner`` (:func:`load_model_aligner`)."""
    from model.registry import load_models, shipped_weights

    loaded: dict[str, Any] = {}
    for name, spec in settings.models.items():
        for label, path in (("checkpoint", spec.checkpoint), ("sr_checkpoint", spec.sr_checkpoint)):
            if path is not None and path.startswith("s3://"):
                raise ValueError(
                    f"MMD_MODELS[{name!r}].{label} is {path!r}: the worker loads local files only; "
                    "download it first with `mmd fetch-weights` and point MMD_MODELS at the file")
        t0 = time.perf_counter()
        sr_preset = spec.resolved_sr_preset()
        checkpoint: Any = spec.checkpoint
        sr_checkpoint: Any = spec.sr_checkpoint
        shipped = shipped_weights(spec.preset, settings.demo_weights_dir) if spec.shipped \
            else None
        if shipped is not None:
            checkpoint = shipped["base"]
            if sr_checkpoint is None and sr_preset == "demo_sr":
                sr_checkpoint = shipped["sr"]
            log.info("model %r: shipped %s weights %s (sha256 verified)", name, spec.preset,
                     shipped["base"].parent)
        models = load_models(name, preset=spec.preset, checkpoint=checkpoint,
                             sr_preset=sr_preset, sr_checkpoint=sr_checkpoint,
                             device=settings.device, precision=settings.precision,
                             sr=sr_preset is not None, speed=speed_options(settings),
                             sr_batch_frames=settings.sr_max_batch_frames)
        aligner = load_model_aligner(name, spec, models.unet_cfg, settings)
        if aligner is not None:
            models = dataclasses.replace(models, aligner=aligner)
        seconds = time.perf_counter() - t0
        metrics.MODEL_LOAD_SECONDS.labels(model=name, phase="load").set(seconds)
        if models.random_weights:
            log.warning("model %r: NO CHECKPOINT configured -> RANDOM weights of preset %r; "
                        "outputs are noise-like and every result says random_weights=true",
                        name, spec.preset)
        log.info("model %r loaded in %.2f s (preset %s, sr %s, aligner %s, device %s, %s)", name,
                 seconds, spec.preset, sr_preset, spec.resolved_aligner(), settings.device,
                 settings.precision)
        loaded[name] = models
    return loaded


def aligner_weights(spec: ModelSpec, settings: Settings) -> str | os.PathLike[str] | None:
    """The weights file of ``spec``'s aligner: ``aligner_weights`` when set; for the ``demo``
    aligner without one, the ``aligner`` entry of ``MMD_DEMO_WEIGHTS_DIR``'s manifest when that
    folder is set (sha256 checked), else None (the weights shipped in the package)."""
    if spec.aligner_weights is not None:
        return spec.aligner_weights
    if spec.resolved_aligner() != "demo" or settings.demo_weights_dir is None:
        return None
    from model.registry import shipped_weights

    paths = shipped_weights("demo", settings.demo_weights_dir) or {}
    if "aligner" not in paths:
        raise FileNotFoundError(
            f"MMD_DEMO_WEIGHTS_DIR={settings.demo_weights_dir} has no demo aligner (no "
            "'aligner' entry in its MANIFEST.json): export one there with `mmd train-demo "
            "--what aligner`, or set aligner 'none' for this model")
    return paths["aligner"]


def load_model_aligner(name: str, spec: ModelSpec, unet_cfg: Any, settings: Settings,
                       device: str | None = None) -> Any:
    """The prompt aligner of model ``name`` (``model.aligners.load_aligner`` of
    ``spec.resolved_aligner()`` for its base config ``unet_cfg``, on ``device``, default
    ``MMD_DEVICE``), or None when it has none. Raises ValueError when the aligner's default
    scale is above ``MMD_PROMPT_SCALE_MAX`` (a prompt without a scale could never run)."""
    kind = spec.resolved_aligner()
    if kind is None:
        return None
    from model.aligners import load_aligner

    aligner = load_aligner(kind, unet_cfg, weights=aligner_weights(spec, settings),
                           device=device or settings.device)
    if aligner.default_scale > settings.prompt_scale_max:
        raise ValueError(
            f"model {name!r}: the {kind} aligner's default scale {aligner.default_scale:g} is "
            f"above MMD_PROMPT_SCALE_MAX={settings.prompt_scale_max:g}; raise the limit")
    log.info("model %r: %s prompt aligner (default scale %g)", name, kind,
             aligner.default_scale)
    return aligner


def warm_up(models: dict[str, Any], generate_batch: Any) -> None:
    """One 2-step generation per model (allocates buffers, triggers lazy init and kernels; with
    ``MMD_COMPILE`` / ``MMD_CUDA_GRAPHS`` this is where the networks get compiled, for batch 1
    and SR chunks of ``MMD_SR_MAX_BATCH_FRAMES`` frames)."""
    from model.pipeline import GenerationRequest
    from model.samplers import SamplerSpec

    for name, m in models.items():
        t0 = time.perf_counter()
        request = GenerationRequest(
            mode="joint", seed=0, num_samples=1,
            base_sampler=SamplerSpec(name="ddim", steps=2),
            super_resolution=m.sr is not None,
            sr_sampler=SamplerSpec(name="ddim", steps=2),
        )
        generate_batch([request], m)
        seconds = time.perf_counter() - t0
        metrics.MODEL_LOAD_SECONDS.labels(model=name, phase="warmup").set(seconds)
        log.info("model %r warmed up in %.2f s", name, seconds)

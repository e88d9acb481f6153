"""``mmd generate``: run the generation pipeline locally and write an MP4 (H.264 + AAC).

Examples::

    mmd generate --out demo.mp4                        # the shipped demo model on CPU
    mmd generate --preset tiny --out noise.mp4         # tiny random-weights model
    mmd generate --checkpoint landscape.pt --sr-checkpoint landscape_sr.pt --device cuda \\
        --precision fp16 --seed 3 --out sample.mp4
    mmd generate --checkpoint landscape.pt --no-sr --mode video-to-audio --input clip.mp4 \\
        --start-s 2.5 --out with_sound.mp4
    mmd generate --checkpoint landscape.pt --no-sr --mode audio-to-video --input song.mp3 --out
    v.mp4
    mmd generate --prompt red --out red.mp4            # demo: steer the flashes and tones to red

Sampler settings default to the fast preset (``core.sampling``: base DPM-Solver++ multistep order 3,
15 steps; conditional DDIM 10 steps, each resampled once; SR DPM-Solver++ 12, x0 clipped);
``--official`` selects the official ones
(base DPM-Solver 20 steps order 3 singlestep; conditional the 1000-step DDPM loop; SR DDIM 25).
``--sampler/--steps/--order/--method/--resample/--sr-sampler/--sr-steps`` override single
fields of either.

Without ``--checkpoint`` the ``demo`` preset runs the weights shipped in the package
(``MMD_DEMO_WEIGHTS_DIR`` replaces their folder; sha256 checked); another preset without
``--checkpoint`` is randomly initialised and the output is noise (said plainly on stderr).
With ``--num-samples N > 1`` the files are ``<out stem>-<i><suffix>``.
Exit status: 0 done, 2 bad arguments/input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from core.sampling import (
    METHODS,
    MODES,
    SAMPLER_NAMES,
    Preset,
    SamplerRequest,
    SuperResolutionRequest,
    default_guidance_scale,
    resolve,
)
from core.windows import clip_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mmd generate`` (no torch import here: ``mmd --help`` stays fast)."""
    g = parser.add_argument_group("model")
    g.add_argument("--checkpoint", type=Path, help="base U-Net weights (.pt state dict); "
                   "omitted: the shipped weights of the demo preset, random weights (noise) "
                   "for the others")
    g.add_argument("--sr-checkpoint", type=Path, help="super-resolution U-Net weights (.pt)")
    g.add_argument("--preset", help="base preset: demo, landscape, aist++ or tiny "
                   "(default: demo without --checkpoint, landscape with it)")
    g.add_argument("--sr-preset", help="SR preset: official, demo_sr or tiny (default: tiny for "
                   "tiny, demo_sr for demo, official otherwise)")
    g.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: cpu)")
    g.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0 = auto: "
                   "1 for the small demo and tiny presets on cpu, as MMD_TORCH_THREADS=0 does "
                   "for the worker; else torch's default)")
    r = parser.add_argument_group("request")
    r.add_argument("--mode", default="joint", choices=MODES)
    r.add_argument("--input", type=Path, help="video clip (video-to-audio) or audio/video file "
                   "(audio-to-video)")
    r.add_argument("--start-s", type=float, default=0.0, help="where in --input to start (seconds)")
    r.add_argument("--duration-s", type=float, help="conditional modes: seconds of --input to "
                   "cover from --start-s with overlapping model windows (default: one window); "
                   "video-to-audio keeps the input's own picture")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--num-samples", type=int, default=1)
    r.add_argument("--official", action="store_true", help="the official sampler settings "
                   "(default: the fast ones; see the module help)")
    r.add_argument("--sampler", choices=SAMPLER_NAMES, help="base sampler (default: the preset's)")
    r.add_argument("--steps", type=int, help="base sampler steps (default: the preset's)")
    r.add_argument("--order", type=int, choices=(1, 2, 3), help="DPM-Solver order")
    r.add_argument("--method", choices=METHODS,
                   help="DPM-Solver method")
    r.add_argument("--resample", type=int, help="DDIM: runs of each step, re-noised back "
                   "between runs (default: the preset's, 2 for the fast conditional one)")
    r.add_argument("--guidance", default="gradient", choices=("gradient", "replacement"),
                   help="conditional modes: gradient guidance or replacement")
    r.add_argument("--guidance-scale", type=float, default=None,
                   help="conditional guidance scale (default: the model's, 1100 for demo, 3.0 "
                   "for the official models)")
    r.add_argument("--no-sr", action="store_true", help="skip super-resolution (64x64 output)")
    r.add_argument("--sr-sampler", choices=SAMPLER_NAMES, help="SR sampler (default: the preset's)")
    r.add_argument("--sr-steps", type=int, help="SR sampler steps (default: the preset's: 12 fast, "
                   "25 official)")
    r.add_argument("--sr-chunk-frames", type=int, default=16, help="frames per SR batch")
    q = parser.add_argument_group("prompt (docs/api.md, Prompts)")
    q.add_argument("--prompt", help="steer generation toward this text with the model's "
                   "aligner (demo: red, green or blue); not with --duration-s")
    q.add_argument("--prompt-scale", type=float, help="prompt guidance strength (default: the "
                   "aligner's)")
    q.add_argument("--aligner", choices=("demo", "imagebind", "none"), help="the prompt aligner "
                   "(default: demo for the demo preset, none otherwise)")
    q.add_argument("--aligner-weights", help="the aligner's weights file (required for "
                   "imagebind; default for demo: the shipped one)")
    parser.add_argument("--out", type=Path, default=Path("sample.mp4"), help="output MP4 path")


def sampler_request(args: argparse.Namespace) -> SamplerRequest:
    """The base sampler fields the flags set (the others: the preset's)."""
    return SamplerRequest(name=args.sampler, steps=args.steps, order=args.order,
                          method=args.method, resample=args.resample)


def sampler_specs(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(base SamplerSpec, SR SamplerSpec)``: the preset's (``--official`` or fast, by
    ``--mode``) with the sampler flags given on top, resolved as the API resolves a request
    (:func:`core.sampling.resolve`). ValueError for an invalid combination."""
    from worker.sampling import sampling_specs

    sampler = sampler_request(args)
    sr = SuperResolutionRequest(sampler=args.sr_sampler, steps=args.sr_steps)
    preset: Preset = "official" if args.official else "fast"
    return sampling_specs(resolve(args.mode, preset, sampler, sr))


def output_paths(out: Path, num_samples: int) -> list[Path]:
    """``out`` itself for one sample, else ``<stem>-<i><suffix>`` for each."""
    if num_samples == 1:
        return [out]
    suffix = out.suffix or ".mp4"
    return [out.with_name(f"{out.stem}-{i}{suffix}") for i in range(num_samples)]


class _Bars:
    """One tqdm bar per pipeline stage (stderr)."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, step: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=f"{stage:>4}", unit="step", file=sys.stderr,
                            dynamic_ncols=True)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _err(message: str) -> int:
    print(f"mmd generate: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:

    from worker.media import MediaError, decode_audio, decode_video_clip, mux_mp4

    if args.mode == "joint" and args.input is not None:
        return _err("--input is only used with --mode video-to-audio or audio-to-video")
    if args.mode != "joint" and args.input is None:
        return _err(f"--mode {args.mode} needs --input (a video clip or an audio file)")
    if args.num_samples < 1:
        return _err(f"--num-samples must be >= 1; got {args.num_samples}")
    if args.duration_s is not None and (args.mode == "joint" or not args.duration_s > 0):
        return _err("--duration-s must be > 0 and is only used with --mode video-to-audio or "
                    "audio-to-video")

    from core.settings import ModelSpec, get_settings
    from model.pipeline import GenerationRequest, generate
    from model.registry import default_sr_preset, load_models, shipped_weights

    preset = args.preset or ("landscape" if args.checkpoint is not None else "demo")
    try:
        model_spec = prompt_model_spec(args, preset)
    except ValueError as exc:
        return _err(str(exc))
    threads = get_settings().model_copy(update={
        "torch_threads": max(args.threads, 0), "device": args.device,
        "models": {preset: ModelSpec(preset=preset)}, "default_model": preset}).cpu_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    checkpoint, sr_checkpoint = args.checkpoint, args.sr_checkpoint
    try:
        base_spec, sr_spec = sampler_specs(args)
        shipped = shipped_weights(preset, get_settings().demo_weights_dir) \
            if checkpoint is None else None
        if shipped is not None:
            checkpoint = shipped["base"]
            sr_preset = args.sr_preset or default_sr_preset(preset)
            if sr_checkpoint is None and not args.no_sr and sr_preset == "demo_sr":
                sr_checkpoint = shipped["sr"]
        models = load_models(
            preset, preset=preset, checkpoint=checkpoint, sr_preset=args.sr_preset,
            sr_checkpoint=sr_checkpoint, device=args.device, precision=args.precision,
            sr=not args.no_sr,
        )
        if args.prompt is not None:
            from worker.loading import load_model_aligner

            models = dataclasses.replace(models, aligner=load_model_aligner(
                preset, model_spec, models.unet_cfg, get_settings(), device=args.device))
    except (ValueError, FileNotFoundError) as exc:
        return _err(str(exc))
    if models.random_weights:
        missing = "--checkpoint" if checkpoint is None else "--sr-checkpoint"
        print(f"mmd generate: NOTE: no {missing}: running RANDOM weights; the output is noise, "
              "not a real sample.", file=sys.stderr)

    frames, _channels, height, width = models.unet_cfg.video_size
    if args.mode != "joint" and args.duration_s is not None and \
            clip_frames(args.duration_s, models.unet_cfg.fps) != frames:
        return _whole_clip(args, models, preset)
    condition: dict[str, Any] = {}
    try:
        if args.mode == "video-to-audio":
            if height != width:
                return _err(f"the model's frames are {height}x{width}; only square models are "
                            "supported")
            condition["condition_video"] = decode_video_clip(
                args.input, start_s=args.start_s, num_frames=frames, fps=models.unet_cfg.fps,
                size=height)
        elif args.mode == "audio-to-video":
            condition["condition_audio"] = decode_audio(
                args.input, start_s=args.start_s, num_samples=models.unet_cfg.audio_size[1],
                sample_rate=models.unet_cfg.sample_rate)
    except MediaError as exc:
        return _err(f"{args.input}: {exc} [{exc.code}]")

    bars = _Bars()
    try:
        request = GenerationRequest(
            mode=args.mode, seed=args.seed, num_samples=args.num_samples, base_sampler=base_spec,
            super_resolution=not args.no_sr, sr_sampler=sr_spec,
            sr_chunk_frames=args.sr_chunk_frames, guidance=args.guidance,
            guidance_scale=args.guidance_scale, prompt=args.prompt,
            prompt_scale=args.prompt_scale, **condition,
        )
        result = generate(request, models, progress=bars)
    except ValueError as exc:
        return _err(str(exc))
    except KeyboardInterrupt:
        print("mmd generate: interrupted", file=sys.stderr)
        return 130
    finally:
        bars.close()

    paths = output_paths(args.out, args.num_samples)
    for path, video, audio in zip(paths, result.frames, result.audio, strict=True):
        mux_mp4(path, video, audio, fps=result.fps, sample_rate=result.sample_rate)
        print(path)
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in result.stage_seconds.items())
    print(f"mmd generate: {len(paths)} file(s), {result.frames.shape[2]}x{result.frames.shape[3]} "
          f"{result.frames.shape[1]} frames, NFE {result.nfe}, {timing}"
          + _prompt_note(args, models)
          + (" (RANDOM weights: noise)" if result.random_weights else ""), file=sys.stderr)
    return 0


def prompt_model_spec(args: argparse.Namespace, preset: str) -> Any:
    """The ``core.settings.ModelSpec`` of ``--preset`` / ``--aligner`` / ``--aligner-weights``,
    with ``--prompt`` / ``--prompt-scale`` checked by the API's rules
    (:func:`core.prompts.check_prompt_request`; limits from the ``MMD_*`` settings).
    ValueError saying what to change."""
    from pydantic import ValidationError

    from core.prompts import PromptRefused, check_prompt_request
    from core.settings import ModelSpec, get_settings

    try:
        spec = ModelSpec(preset=preset, aligner=args.aligner, aligner_weights=args.aligner_weights)
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                   for e in exc.errors())) from exc
    settings = get_settings()
    try:
        check_prompt_request(args.prompt, args.prompt_scale, model=preset,
                             aligner=spec.resolved_aligner(),
                             max_chars=settings.prompt_max_chars,
                             scale_max=settings.prompt_scale_max, duration_s=args.duration_s,
                             sampler=sampler_specs(args)[0].name)
    except PromptRefused as exc:
        if exc.code == "prompt_unsupported":
            raise ValueError(f"preset {preset!r} has no prompt aligner; pass --aligner "
                             "imagebind --aligner-weights PATH, or leave --prompt out") from exc
        flag = {"prompt": "--prompt", "prompt_scale": "--prompt-scale",
                "duration_s": "--duration-s"}[exc.field]
        raise ValueError(f"{flag}: {exc.message}") from exc
    return spec


def _prompt_note(args: argparse.Namespace, models: Any) -> str:
    """``, prompt 'red' scale 20`` (the scale the aligner ran with) or nothing."""
    if args.prompt is None or models.aligner is None:
        return ""
    scale = args.prompt_scale if args.prompt_scale is not None else models.aligner.default_scale
    return f", prompt {models.aligner.check_prompt(args.prompt)!r} scale {scale:g}"


def _whole_clip(args: argparse.Namespace, models: Any, preset: str) -> int:
    """``--duration-s``: the span of ``--input`` through :mod:`worker.whole_clip` (the worker's
    path for a ``duration_s`` job; limits from the ``MMD_*`` settings)."""
    import os
    import tempfile

    from core.contract import JobSpec
    from core.settings import Settings
    from core.store import utcnow
    from worker.errors import JobFailed
    from worker.media import MediaError
    from worker.whole_clip import decode_span, mux_whole_clip, run_whole_clip

    sampler = sampler_request(args)
    sr = SuperResolutionRequest(sampler=args.sr_sampler, steps=args.sr_steps,
                                enabled=not args.no_sr)
    settings = Settings()
    bars = _Bars()
    try:
        sampling = resolve(args.mode, "official" if args.official else "fast", sampler, sr)
        spec = JobSpec(id="local", mode=args.mode, model=preset, seed=args.seed,
                       num_samples=args.num_samples, sampler=sampling.sampler,
                       super_resolution=sampling.super_resolution, preset=sampling.preset,
                       guidance=args.guidance,
                       guidance_scale=default_guidance_scale(preset, args.guidance_scale),
                       start_s=args.start_s, duration_s=args.duration_s, created_at=utcnow())
        span = decode_span(spec, args.input, models.unet_cfg, settings)
        out = run_whole_clip(spec, models, span, settings, bars,
                             sr_on=models.sr is not None and not args.no_sr)
        bars.close()
        paths = output_paths(args.out, args.num_samples)
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=paths[0].parent) as tmp:
            muxed = mux_whole_clip(out, Path(tmp), settings)
            for src, dst in zip(muxed.paths, paths, strict=True):
                os.replace(src, dst)
                print(dst)
    except MediaError as exc:
        return _err(f"{args.input}: {exc} [{exc.code}]")
    except (ValueError, JobFailed) as exc:
        return _err(str(exc))
    except KeyboardInterrupt:
        print("mmd generate: interrupted", file=sys.stderr)
        return 130
    finally:
        bars.close()
    print(f"mmd generate: {len(paths)} file(s), {muxed.width}x{muxed.height} {muxed.fps:g} fps "
          f"{muxed.duration_s:.2f} s, {out.windows} windows, NFE {out.nfe}"
          + (" (RANDOM weights: noise)" if out.random_weights else ""), file=sys.stderr)
    return 0

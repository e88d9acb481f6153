"""The job function's body: spec -> inputs -> pipeline -> MP4s -> storage -> result.

:class:`JobRunner` holds what a worker process loaded once (models, storage, the job store) and
the generation function (``model.pipeline.generate`` in production; unit tests inject a small
fake). Progress is written at every sampler step, and the same callback raises
``SamplingCancelled`` once a cancel was asked for.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.contract import JobError, JobResult, JobSpec, JobStatus, Progress, SampleFile
from core.netguard import UnsafeURLError, pin
from core.settings import Settings
from core.storage import Storage, StorageError
from core.store import JobStore, result_key, utcnow
from worker import metrics
from worker.progress import stage_weights, step_counter
from worker.sampling import sampler_spec
from worker.webhooks import WebhookSender

log = logging.getLogger(__name__)

# generate(request, models, *, progress) -> GenerationResult (see model/pipeline.py)
GenerateFn = Callable[..., Any]
ProgressFn = Callable[[str, int, int], None]


def generation_request(spec: JobSpec, sr_on: bool, cond_video: Any = None,
                       cond_audio: Any = None) -> Any:
    """The ``model.pipeline.GenerationRequest`` of ``spec``: its stored, resolved sampler
    settings as they are (``worker.sampling``)."""
    from model.pipeline import GenerationRequest

    return GenerationRequest(
        mode=spec.mode, seed=spec.seed, num_samples=spec.num_samples,
        base_sampler=sampler_spec(spec.sampler), super_resolution=sr_on,
        sr_sampler=sampler_spec(spec.super_resolution.sampler_params()),
        guidance=spec.guidance, guidance_scale=spec.guidance_scale,
        condition_video=cond_video, condition_audio=cond_audio,
    )


class JobFailed(Exception):
    """A failure with a code for ``GET /jobs/{id}`` (bad input, storage, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class JobRunner:
    settings: Settings
    store: JobStore
    storage: Storage
    models: dict[str, Any]  # name -> model.pipeline.LoadedModels
    generate: GenerateFn
    webhooks: WebhookSender | None = None
    on_progress: Callable[[Progress], None] | None = None  # e.g. RQ job meta
    # per-job bookkeeping, reset by run() (a worker runs one job at a time)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _last_fraction: float = 0.0
    # dynamic batching (worker/batching.py): ids the worker claimed to run with the next job,
    # and the batch's outcome per job id (a GenerationResult or the exception to record)
    batch_extras: list[str] = field(default_factory=list)
    batch_results: dict[str, Any] = field(default_factory=dict)

    # --- entry point ------------------------------------------------------------------
    def run(self, job_id: str) -> str:
        """Run one job to a terminal status; returns it. Never raises for a job's own failure
        (RQ's retries are kept for jobs whose worker died)."""
        spec = self.claim(job_id)
        return spec if isinstance(spec, str) else self.complete(spec)

    def claim(self, job_id: str) -> JobSpec | str:
        """queued -> running; returns the spec, or the status to report when not runnable."""
        spec = self.store.spec(job_id)
        if spec is None:
            log.warning("job %s has no record (expired?); skipping", job_id)
            return "missing"
        if not self.store.claim(job_id):
            current = self.store.status(job_id)
            log.info("job %s is %s, not queued (canceled before it started?); skipping", job_id,
                     current.value if current else "gone")
            return current.value if current else "missing"
        metrics.QUEUE_WAIT.observe(max(0.0, (utcnow() - spec.created_at).total_seconds()))
        return spec

    def complete(self, spec: JobSpec) -> str:
        """Run a claimed job to a terminal status (from ``batch_results`` when it ran in a batch)."""
        job_id = spec.id
        started = time.monotonic()
        self.stage_seconds = {}
        self._last_fraction = 0.0
        metrics.JOBS_IN_PROGRESS.inc()
        status = JobStatus.failed
        try:
            if self.store.cancel_requested(job_id):
                raise _cancelled()
            result = self._execute(spec)
            status = JobStatus.succeeded if self.store.succeed(job_id, result) else status
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded status
            status = self._record_failure(spec, exc)
        finally:
            metrics.JOBS_IN_PROGRESS.dec()
            metrics.JOB_SECONDS.labels(mode=spec.mode).observe(time.monotonic() - started)
            metrics.JOBS_FINISHED.labels(mode=spec.mode, status=status.value).inc()
        self._notify(spec)
        log.info("job %s %s in %.1f s", job_id, status.value, time.monotonic() - started)
        return status.value

    # --- the stages -------------------------------------------------------------------
    def _execute(self, spec: JobSpec) -> JobResult:
        models = self.models.get(spec.model)
        if models is None:
            raise JobFailed("unknown_model", f"model {spec.model!r} is not loaded by this "
                            f"worker (loaded: {sorted(self.models)}); check MMD_MODELS")
        sr_on = self.sr_on(spec, models)
        with tempfile.TemporaryDirectory(prefix=f"mmd-{spec.id[:8]}-") as tmp_name:
            tmp = Path(tmp_name)
            cond_video = cond_audio = None
            if spec.mode != "joint":
                src = self._stage(spec, "fetch", lambda: self._fetch_input(spec, tmp))
                cond_video, cond_audio = self._stage(
                    spec, "decode", lambda: self._decode(spec, src, models.unet_cfg))
            request = self.request(spec, sr_on, cond_video, cond_audio)
            gen = self._generate_for(spec, request, models, sr_on)
            for stage, seconds in gen.stage_seconds.items():
                self.stage_seconds[stage] = seconds
                metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
            for stage, count in gen.nfe.items():
                metrics.NFE.labels(stage=stage).inc(count)
            for stage, peak in getattr(gen, "peak_memory_bytes", {}).items():
                metrics.PEAK_MEMORY.labels(stage=stage).set(peak)  # CUDA only
            paths = self._stage(spec, "mux", lambda: self._mux(gen, tmp))
            samples = self._stage(spec, "upload", lambda: self._upload(spec, paths))
        frames = gen.frames
        return JobResult(
            url=samples[0].url, bytes=samples[0].bytes, sha256=samples[0].sha256,
            duration_s=round(frames.shape[1] / gen.fps, 6), random_weights=bool(gen.random_weights),
            model=spec.model, num_samples=len(samples), width=int(frames.shape[3]),
            height=int(frames.shape[2]), fps=int(gen.fps), sample_rate=int(gen.sample_rate),
            samples=samples, nfe={k: int(v) for k, v in gen.nfe.items()},
            stage_seconds={k: round(v, 4) for k, v in self.stage_seconds.items()},
            batch_size=int(getattr(gen, "batch_size", 1)),
        )

    def request(self, spec: JobSpec, sr_on: bool, cond_video: Any = None,
                cond_audio: Any = None) -> Any:
        """The ``model.pipeline.GenerationRequest`` of ``spec``."""
        return generation_request(spec, sr_on, cond_video, cond_audio)

    @staticmethod
    def sr_on(spec: JobSpec, models: Any) -> bool:
        return spec.super_resolution.enabled and models.sr is not None

    def _generate_for(self, spec: JobSpec, request: Any, models: Any, sr_on: bool) -> Any:
        """Generate alone, or take this job's outcome of the batch it ran in."""
        if spec.id not in self.batch_results:
            return self.generate(request, models, progress=self._progress_fn(spec, sr_on))
        outcome = self.batch_results.pop(spec.id)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _stage(self, spec: JobSpec, stage: str, fn: Callable[[], Any]) -> Any:
        if self._report(spec.id, Progress(stage=stage, fraction=self._last_fraction)):
            raise _cancelled()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        self.stage_seconds[stage] = seconds
        metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        return out

    def _progress_fn(self, spec: JobSpec, sr_on: bool) -> ProgressFn:
        """Progress in sampler steps per stage and one fraction weighted by expected compute
        (``worker.progress``)."""
        weights = stage_weights(spec, self.models.get(spec.model), sr_on)
        base_steps = step_counter(spec.sampler)
        job_id = spec.id

        def progress(stage: str, step: int, total: int) -> None:
            if stage == "base":
                step, total = base_steps(step, total)
            fraction = weights.fraction(stage, step, total)
            self._last_fraction = fraction
            if self._report(job_id, Progress(stage=stage, step=step, total=total,
                                             fraction=round(fraction, 4))):
                raise _cancelled()

        return progress

    def _report(self, job_id: str, progress: Progress) -> bool:
        """Publish progress; returns True once a cancel was asked for."""
        cancel = self.store.set_progress(job_id, progress)
        if self.on_progress is not None:
            self.on_progress(progress)
        return cancel

    def _fetch_input(self, spec: JobSpec, tmp: Path) -> Path:
        limit = self.settings.max_upload_bytes
        if spec.input_key:
            dst = tmp / ("input" + Path(spec.input_key).suffix)
            try:
                self.storage.download(spec.input_key, dst)
            except StorageError as exc:
                raise JobFailed("input_missing", f"the upload is gone from storage: {exc}") from exc
            return dst
        if not spec.input_url:
            raise JobFailed("no_input", f"mode {spec.mode!r} needs an upload or an input URL")
        dst = tmp / "input"
        size = 0
        try:
            # Re-check the address at fetch time and pin the connection to it (DNS rebinding);
            # redirects are not followed, so a public URL cannot bounce to an internal host.
            target = pin(spec.input_url, allow_private=self.settings.webhook_allow_private,
                         what="audio_url")
        except UnsafeURLError as exc:
            raise JobFailed("unsafe_url", str(exc)) from exc
        extra = {"Host": target.host_header} if target.host_header else {}
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
        try:
            with httpx.Client(timeout=self.settings.webhook_timeout_s * 3,
                              follow_redirects=False) as client:
                request = client.build_request("GET", target.url, headers=extra,
                                               extensions=extensions)
                r = client.send(request, stream=True)
                try:
                    if r.status_code != 200:
                        raise JobFailed("fetch_failed", f"GET {spec.input_url} answered "
                                        f"{r.status_code}; the URL must serve the file directly "
                                        "(redirects are not followed)")
                    with open(dst, "wb") as fh:
                        for chunk in r.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > limit:
                                raise JobFailed("input_too_large", f"{spec.input_url} is "
                                                f"larger than MMD_MAX_UPLOAD_BYTES={limit}")
                            fh.write(chunk)
                finally:
                    r.close()
        except httpx.HTTPError as exc:
            raise JobFailed("fetch_failed", f"could not download {spec.input_url}: {exc}") from exc
        return dst

    def _decode(self, spec: JobSpec, src: Path, unet_cfg: Any) -> tuple[Any, Any]:
        from worker import media

        frames, _channels, height, _width = unet_cfg.video_size
        if spec.input_url:  # fetched here, so the gateway never checked it: same checks now
            from core.probe import UploadRejected, check_upload

            need = "video" if spec.mode == "video-to-audio" else "audio"
            try:
                check_upload(src, need=need, settings=self.settings)
            except UploadRejected as exc:
                raise JobFailed(exc.code, f"{spec.input_url}: {exc.detail}") from exc
        limits = {"max_bytes": self.settings.max_upload_bytes,
                  "timeout_s": self.settings.decode_timeout_s}
        try:
            if spec.mode == "video-to-audio":
                video = media.decode_video_clip(src, start_s=spec.start_s, num_frames=frames,
                                                fps=10, size=height, **limits,
                                                max_frames=self.settings.max_decoded_frames,
                                                max_pixels=self.settings.max_video_width
                                                * self.settings.max_video_height)
                return video, None
            audio = media.decode_audio(src, start_s=spec.start_s,
                                       num_samples=unet_cfg.audio_size[1], sample_rate=16000,
                                       **limits, max_samples=self.settings.max_decoded_samples)
        except media.MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV oddities on hostile input, MemoryError
            raise JobFailed("decode_failed", f"the {spec.mode.split('-')[0]} input could not be "
                            f"decoded ({type(exc).__name__}: {exc}); re-encode it (H.264 MP4 "
                            "or WAV)") from exc
        return None, audio

    def _mux(self, gen: Any, tmp: Path) -> list[Path]:
        from worker import media

        paths = []
        for i in range(gen.frames.shape[0]):
            path = tmp / f"sample_{i}.mp4"
            media.mux_mp4(path, gen.frames[i], gen.audio[i], fps=gen.fps,
                          sample_rate=gen.sample_rate)
            paths.append(path)
        return paths

    def _upload(self, spec: JobSpec, paths: list[Path]) -> list[SampleFile]:
        samples = []
        for i, path in enumerate(paths):
            digest = _sha256(path)
            key = result_key(spec.id, i)
            size = self.storage.put_file(key, path, content_type="video/mp4")
            stored = self.storage.size(key)  # succeeded only once the object is readable
            if stored != size:
                raise StorageError(f"result {key!r} reads back as {stored} bytes after writing "
                                   f"{size}; check the storage backend")
            url = f"/jobs/{spec.id}/result" + (f"?sample={i}" if i else "")
            samples.append(SampleFile(url=url, bytes=size, sha256=digest))
        return samples

    # --- endings ----------------------------------------------------------------------
    def _record_failure(self, spec: JobSpec, exc: Exception) -> JobStatus:
        from model.samplers import SamplingCancelled

        if isinstance(exc, SamplingCancelled):
            self.store.mark_canceled(spec.id)
            return JobStatus.canceled
        code = getattr(exc, "code", None)
        if isinstance(exc, JobFailed | ValueError) and isinstance(code, str):
            error = JobError(code=code, message=str(exc))
        elif isinstance(exc, ValueError):  # the pipeline's input validation
            error = JobError(code="invalid_request", message=str(exc))
        elif isinstance(exc, StorageError):
            error = JobError(code="storage_error", message=str(exc))
        elif type(exc).__name__ == "JobTimeoutException":
            error = JobError(code="timeout", message=f"the job ran past MMD_JOB_TIMEOUT_S="
                             f"{self.settings.job_timeout_s} s; use fewer steps or samples")
        else:
            log.exception("job %s failed", spec.id)
            error = JobError(code="internal", message=f"{type(exc).__name__}: {exc}")
        self.store.fail(spec.id, error)
        return JobStatus.failed

    def _notify(self, spec: JobSpec) -> None:
        if not spec.webhook_url or self.webhooks is None:
            return
        view = self.store.view(spec.id)
        if view is None:
            return
        payload = view.model_dump(mode="json")
        base = (self.settings.public_url or "").rstrip("/")
        if base and payload.get("result"):
            payload["result"]["url"] = base + payload["result"]["url"]
        self.webhooks.send(spec.webhook_url, f"job.{view.status.value}", payload)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cancelled() -> Exception:
    from model.samplers import SamplingCancelled

    return SamplingCancelled("canceled by request")

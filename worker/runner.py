"""Running jobs: ``JobRunner.run_many(ids)`` claims each job, prepares its request (fetching and
decoding a conditional job's input), makes one ``generate_batch`` call for the jobs that can
share it, and finishes each job with its own result or error (MP4s, storage, record, webhook,
metrics). A single job is a batch of one.

:class:`JobRunner` holds what a worker process loaded once (models, storage, the job store) and
the batch generation function (``model.pipeline.generate_batch`` in production; unit tests
inject a small fake). Progress is written at every sampler step, and the same callback raises
``SamplingCancelled`` once a cancel was asked for: a job canceled in a batch is marked canceled
at once and dropped, the others go on.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract import InputMedia, JobResult, JobSpec, JobStatus, Progress
from core.settings import Settings
from core.storage import Storage
from core.store import JobStore, utcnow
from worker import metrics
from worker.errors import JobFailed, job_error
from worker.inputs import decode_input, fetch_input
from worker.memory import batch_too_large
from worker.muxing import mp4_sample_rate
from worker.outputs import mux_samples, upload_samples
from worker.progress import stage_weights, step_counter
from worker.sampling import generation_request, resolved_prompt, spec_key
from worker.webhooks import WebhookSender
from worker.whole_clip import (
    SpanInput,
    WholeClipOutput,
    decode_span,
    is_whole_clip,
    mux_whole_clip,
    run_whole_clip,
)

log = logging.getLogger(__name__)

# generate_batch(requests, models, *, progress_fns) -> [GenerationResult | None] (model/pipeline.py)
GenerateBatchFn = Callable[..., list[Any]]
ProgressFn = Callable[[str, int, int], None]


@dataclass
class _Run:
    """One claimed job on its way through :meth:`JobRunner.run_many`."""

    spec: JobSpec
    tmp: Path
    started: float = field(default_factory=time.monotonic)
    models: Any = None  # model.pipeline.LoadedModels, once found
    request: Any = None  # model.pipeline.GenerationRequest, once prepared
    stage_seconds: dict[str, float] = field(default_factory=dict)
    fraction: float = 0.0  # the last progress fraction reported
    input_media: InputMedia | None = None  # how a conditional job's input was read
    span: SpanInput | None = None  # a duration_s job's decoded span (worker.whole_clip)

    @property
    def sr_on(self) -> bool:
        return self.spec.super_resolution.enabled and self.models.sr is not None


@dataclass
class JobRunner:
    settings: Settings
    store: JobStore
    storage: Storage
    models: dict[str, Any]  # name -> model.pipeline.LoadedModels
    generate_batch: GenerateBatchFn
    webhooks: WebhookSender | None = None
    on_progress: Callable[[Progress], None] | None = None  # an observer (tests)

    # --- entry points -----------------------------------------------------------------
    def run(self, job_id: str) -> str:
        """Run one job to a terminal status; returns it (a batch of one)."""
        return self.run_many([job_id])[0]

    def run_many(self, job_ids: Sequence[str]) -> list[str]:
        """Run ``job_ids`` to terminal statuses, generating together the ones that may share a
        batch; returns each final status (or ``missing`` / the current status for a job that
        was not runnable). Never raises for a job's own failure (RQ's retries are kept for
        jobs whose worker died)."""
        statuses: dict[str, str] = {}
        with ExitStack() as stack:
            runs: list[_Run] = []
            for job_id in job_ids:
                spec = self.claim(job_id)
                if isinstance(spec, str):
                    statuses[job_id] = spec
                    continue
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"mmd-{job_id[:8]}-"))
                runs.append(_Run(spec=spec, tmp=Path(tmp)))
            metrics.JOBS_IN_PROGRESS.inc(len(runs))
            try:
                ready = [run for run in runs if self._prepare(run, statuses)]
                for group in _groups(ready):
                    for run, outcome in zip(group, self._generate(group), strict=True):
                        statuses[run.spec.id] = self._finish(run, outcome)
            except Exception as exc:  # noqa: BLE001 - e.g. the job timeout between two phases
                for run in runs:  # no claimed job is left running
                    if run.spec.id not in statuses:
                        statuses[run.spec.id] = self._finish(run, exc)
            finally:
                metrics.JOBS_IN_PROGRESS.dec(len(runs))
        return [statuses[job_id] for job_id in job_ids]

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

    # --- the phases -------------------------------------------------------------------
    def _prepare(self, run: _Run, statuses: dict[str, str]) -> bool:
        """Find the models and build the request (fetch and decode a conditional job's input);
        a job that fails here is finished at once. True when ready to generate."""
        spec = run.spec
        try:
            if self.store.cancel_requested(spec.id):
                raise _cancelled()
            run.models = self.models.get(spec.model)
            if run.models is None:
                raise JobFailed("unknown_model", f"model {spec.model!r} is not loaded by this "
                                f"worker (loaded: {sorted(self.models)}); check MMD_MODELS")
            cond_video = cond_audio = None
            if is_whole_clip(spec, run.models.unet_cfg):
                src = self._stage(run, "fetch", lambda: fetch_input(spec, run.tmp, self.storage,
                                                                    self.settings))
                run.span = self._stage(run, "decode", lambda: decode_span(
                    spec, src, run.models.unet_cfg, self.settings))
                run.input_media = run.span.media
                return True
            if spec.mode != "joint":
                src = self._stage(run, "fetch", lambda: fetch_input(spec, run.tmp, self.storage,
                                                                    self.settings))
                cond_video, cond_audio, run.input_media = self._stage(
                    run, "decode", lambda: decode_input(spec, src, run.models.unet_cfg,
                                                        self.settings))
            run.request = generation_request(spec, run.sr_on, cond_video, cond_audio)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded status
            statuses[spec.id] = self._finish(run, exc)
            return False
        return True

    def _generate(self, group: list[_Run]) -> list[Any]:
        """One ``generate_batch`` call for ``group`` (compatible jobs, same models); each job's
        ``GenerationResult`` or the exception to record."""
        from model.samplers import SamplingCancelled

        models = group[0].models
        if (span := group[0].span) is not None:  # runs alone (worker.sampling.spec_key)
            run = group[0]
            try:
                return [run_whole_clip(run.spec, models, span, self.settings,
                                       self._progress_fn(run), run.sr_on)]
            except Exception as exc:  # noqa: BLE001 - recorded as the job's outcome
                return [exc]
        samples = sum(run.spec.num_samples for run in group)
        if len(group) > 1:
            reason = batch_too_large(models, len(group), samples, sr=group[0].sr_on,
                                     memory_mb=self.settings.batch_memory_mb)
            if reason is not None:
                return [JobFailed("batch_too_large", reason)] * len(group)
        try:
            results = self.generate_batch([run.request for run in group], models,
                                          progress_fns=[self._progress_fn(run) for run in group])
        except Exception as exc:  # noqa: BLE001 - every member records it
            return [exc] * len(group)
        return [result if result is not None else SamplingCancelled("canceled by request")
                for result in results]

    def _finish(self, run: _Run, outcome: Any) -> str:
        """Record ``outcome`` (a ``GenerationResult`` to store, or the exception the job ended
        with) as the job's terminal status; metrics, log, webhook."""
        from model.samplers import SamplingCancelled

        spec = run.spec
        status = JobStatus.failed
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            result = self._store_result(run, outcome)
            status = JobStatus.succeeded if self.store.succeed(spec.id, result) else status
        except SamplingCancelled:
            self.store.mark_canceled(spec.id)
            status = JobStatus.canceled
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded status
            self.store.fail(spec.id, job_error(exc, job_id=spec.id,
                                               timeout_s=self.settings.job_timeout_s))
        seconds = time.monotonic() - run.started
        metrics.JOB_SECONDS.labels(mode=spec.mode).observe(seconds)
        metrics.JOBS_FINISHED.labels(mode=spec.mode, status=status.value).inc()
        self._notify(spec)
        log.info("job %s %s in %.1f s", spec.id, status.value, seconds)
        return status.value

    def _store_result(self, run: _Run, gen: Any) -> JobResult:
        """Mux and upload ``gen``'s samples; the job's :class:`JobResult`."""
        for stage, seconds in gen.stage_seconds.items():
            run.stage_seconds[stage] = seconds
            metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        for stage, count in gen.nfe.items():
            metrics.NFE.labels(stage=stage).inc(count)
        for stage, peak in gen.peak_memory_bytes.items():
            metrics.PEAK_MEMORY.labels(stage=stage).set(peak)  # CUDA only
        spec = run.spec
        if isinstance(gen, WholeClipOutput):
            muxed = self._stage(run, "mux", lambda: mux_whole_clip(gen, run.tmp, self.settings))
            paths, windows = muxed.paths, gen.windows
            width, height, fps, duration = muxed.width, muxed.height, muxed.fps, muxed.duration_s
            video = muxed.video
        else:
            paths, windows = self._stage(run, "mux", lambda: mux_samples(gen, run.tmp)), 1
            _, count, height, width, _ = gen.frames.shape
            fps, duration = float(gen.fps), count / gen.fps
            video = "resized" if spec.mode == "video-to-audio" else "generated"
        samples = self._stage(run, "upload", lambda: upload_samples(spec.id, paths, self.storage))
        prompt, prompt_scale = resolved_prompt(spec, run.models)
        return JobResult(
            url=samples[0].url, bytes=samples[0].bytes, sha256=samples[0].sha256,
            duration_s=round(duration, 6), random_weights=bool(gen.random_weights),
            model=spec.model, num_samples=len(samples), width=int(width), height=int(height),
            fps=fps, sample_rate=mp4_sample_rate(int(gen.sample_rate)),
            samples=samples, nfe={k: int(v) for k, v in gen.nfe.items()},
            stage_seconds={k: round(v, 4) for k, v in run.stage_seconds.items()},
            batch_size=int(gen.batch_size), input=run.input_media, windows=windows,
            video=video,
            prompt=prompt, prompt_scale=prompt_scale,
        )

    # --- progress ---------------------------------------------------------------------
    def _stage(self, run: _Run, stage: str, fn: Callable[[], Any]) -> Any:
        """Run one worker-side stage of ``run``, reporting it and timing it."""
        if self._report(run.spec.id, Progress(stage=stage, fraction=run.fraction)):
            raise _cancelled()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        run.stage_seconds[stage] = seconds
        metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        return out

    def _progress_fn(self, run: _Run) -> ProgressFn:
        """The pipeline's progress callback for ``run``: progress in sampler steps per stage and
        one fraction weighted by expected compute (``worker.progress``); once a cancel was asked
        for, marks the job canceled at once and raises ``SamplingCancelled``."""
        weights = stage_weights(run.spec, run.models, run.sr_on, span=run.span)
        base_steps = step_counter(run.spec.sampler)
        job_id = run.spec.id

        def progress(stage: str, step: int, total: int) -> None:
            if stage == "base":
                step, total = base_steps(step, total)
            run.fraction = weights.fraction(stage, step, total)
            if self._report(job_id, Progress(stage=stage, step=step, total=total,
                                             fraction=round(run.fraction, 4))):
                self.store.mark_canceled(job_id)  # at once; a batch goes on without it
                raise _cancelled()

        return progress

    def _report(self, job_id: str, progress: Progress) -> bool:
        """Publish progress (one Redis round trip); returns True once a cancel was asked for."""
        cancel = self.store.set_progress(job_id, progress)
        if self.on_progress is not None:
            self.on_progress(progress)
        return cancel

    def _notify(self, spec: JobSpec) -> None:
        if not spec.webhook_url or self.webhooks is None:
            return
        view = self.store.view(spec.id)
        if view is None:
            return
        if view.result is not None:
            view = view.model_copy(update={
                "result": view.result.absolute(self.settings.public_url or "")})
        self.webhooks.send(spec.webhook_url, f"job.{view.status.value}",
                           view.model_dump(mode="json"))


def _groups(runs: list[_Run]) -> list[list[_Run]]:
    """``runs`` split into the batches that may each be one ``generate_batch`` call: the jobs
    with equal ``spec_key`` together (in order), every other job alone."""
    groups: dict[object, list[_Run]] = {}
    for i, run in enumerate(runs):
        key = spec_key(run.spec)
        groups.setdefault(("alone", i) if key is None else key, []).append(run)
    return list(groups.values())


def _cancelled() -> Exception:
    from model.samplers import SamplingCancelled

    return SamplingCancelled("canceled by request")

"""Dynamic batching: after dequeuing a job, claim compatible queued jobs and run them together.

Compatible (:func:`spec_key`): same model and ``num_samples``, and equal
``model.pipeline.batch_key`` (joint mode, the same samplers and SR settings, nothing that couples
the samples of a batch: conditional modes, adaptive DPM-Solver and stochastic SR samplers always
run alone). Up to ``MMD_MAX_BATCH`` jobs, waiting at most ``MMD_BATCH_WAIT_MS`` for more
to arrive, and only as many as fit ``MMD_BATCH_MEMORY_MB`` by :func:`estimate_batch_bytes` (the
larger of the base stage and one SR chunk).

Claiming is atomic across workers and against a crash: one Redis transaction (``WATCH`` on the
queue list) removes the id from RQ's queue and gives the job an RQ execution in the started
registry, so a worker killed at any point leaves each job either queued or started, never in
neither, and exactly one worker can claim it. The execution is renewed while the claim loop waits
and then by the worker's job heartbeat thread like the job RQ gave it, so a batch whose worker
died is found abandoned and retried like any job. Each job is then completed by
:class:`worker.runner.JobRunner` (result upload, metadata, webhook, metrics) on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import WatchError
from rq.executions import Execution
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.queue import Queue

from core.contract import JobSpec, JobStatus
from worker import metrics
from worker.runner import JobFailed, JobRunner, ProgressFn, generation_request

if TYPE_CHECKING:
    from model.config import SRConfig
    from model.pipeline import LoadedModels

log = logging.getLogger(__name__)
SCAN_LIMIT = 200  # queued ids looked at per scan (the head of the queue)
CLAIM_RETRIES = 5  # transactions tried per job before leaving it queued (busy queue)


def spec_key(spec: JobSpec) -> tuple[object, ...] | None:
    """Jobs with equal keys may share a batch: the same model and ``num_samples``, and equal
    ``model.pipeline.batch_key`` of their requests (the one rule of what may run together);
    None = this job always runs alone."""
    from model.pipeline import batch_key

    key = batch_key(generation_request(spec, sr_on=spec.super_resolution.enabled))
    return None if key is None else (spec.model, spec.num_samples, key)


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
    per_sample = 4 * cfg.model_channels * tokens * (cfg.num_res_blocks + 1) * len(cfg.channel_mult) * 2
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


class Batcher:
    """Claims compatible jobs for the job the worker just dequeued (see the module doc)."""

    def __init__(self, runner: JobRunner, connection: Redis, worker_name: str) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.connection = connection
        self.worker_name = worker_name
        self.active: list[tuple[Job, Execution]] = []
        self._lock = threading.Lock()
        self._warned = False  # logged once that the memory budget holds no batch

    def claim(self, job: Job, queue: Queue, ttl: int) -> list[str]:
        """Claim up to ``MMD_MAX_BATCH - 1`` jobs compatible with ``job``; sets the runner's
        ``batch_extras``. Returns the claimed ids (empty: run ``job`` alone)."""
        limit = self.settings.max_batch
        lead = self.runner.store.spec(str(job.args[0]) if job.args else job.id)
        key = spec_key(lead) if lead is not None and limit > 1 else None
        models = self.runner.models.get(lead.model) if lead is not None else None
        if key is None or models is None:
            return []
        budget = self.settings.batch_memory_mb * 2**20

        def fits(jobs: int) -> bool:
            need = estimate_batch_bytes(models, lead.num_samples * jobs,
                                        sr=lead.super_resolution.enabled)
            return need <= budget

        if not fits(2) and not self._warned:
            self._warned = True
            log.warning("MMD_BATCH_MEMORY_MB=%d cannot hold 2 jobs like %s (estimated %s MiB); "
                        "they run alone: raise MMD_BATCH_MEMORY_MB (or, if sr is the larger, lower "
                        "MMD_SR_MAX_BATCH_FRAMES)", self.settings.batch_memory_mb, job.id,
                        {k: v // 2**20 for k, v in estimate_stage_bytes(
                            models, 2 * lead.num_samples,
                            sr=lead.super_resolution.enabled).items()})
        claimed: list[str] = []
        deadline = renewed = time.monotonic()
        deadline += self.settings.batch_wait_ms / 1000
        while True:
            for raw in self.connection.lrange(queue.key, 0, SCAN_LIMIT - 1):
                if len(claimed) + 1 >= limit or not fits(len(claimed) + 2):
                    break
                job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                spec = self.runner.store.spec(job_id)
                if spec is None or spec_key(spec) != key:
                    continue
                if self.runner.store.status(job_id) != JobStatus.queued:
                    continue
                if self._claim_one(queue.key, job_id, ttl):
                    claimed.append(job_id)
            full = len(claimed) + 1 >= limit or not fits(len(claimed) + 2)
            left = deadline - time.monotonic()
            if full or left <= 0:
                break
            if time.monotonic() - renewed > ttl / 3:  # a long MMD_BATCH_WAIT_MS: keep them ours
                self.heartbeat(ttl)
                renewed = time.monotonic()
            time.sleep(min(0.02, left))
        self.runner.batch_extras = list(claimed)
        if claimed:
            log.info("job %s runs in a batch with %s", job.id, claimed)
        return claimed

    def _claim_one(self, queue_key: str, job_id: str, ttl: int) -> bool:
        """Take ``job_id`` off the queue list and mark it started by this worker (an execution in
        the started registry) in one transaction; False if another worker got it first (or the
        queue kept changing under us: it stays queued, nothing is lost)."""
        try:
            job: Job | None = Job.fetch(job_id, connection=self.connection)
        except Exception:  # noqa: BLE001 - RQ job hash gone (expired): the record decides
            job = None
        for _ in range(CLAIM_RETRIES):
            with self.connection.pipeline() as pipe:
                try:
                    pipe.watch(queue_key)
                    if pipe.lpos(queue_key, job_id) is None:
                        return False
                    pipe.multi()
                    pipe.lrem(queue_key, 1, job_id)
                    execution = None
                    if job is not None:
                        job.prepare_for_execution(self.worker_name, pipeline=pipe)
                        execution = Execution.create(job, ttl, pipe, worker_name=self.worker_name)
                    pipe.execute()
                except WatchError:
                    continue  # the queue changed between WATCH and EXEC: look again
            if job is None or execution is None:
                log.warning("claimed job %s has no RQ job; running it from its record", job_id)
            else:
                with self._lock:
                    self.active.append((job, execution))
            return True
        return False

    def heartbeat(self, ttl: int) -> None:
        """Renew the claimed jobs' started-registry entries (called by the job heartbeat)."""
        with self._lock:
            active = list(self.active)
        if not active:
            return
        with self.connection.pipeline() as pipe:
            for job, execution in active:
                execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
            pipe.execute()

    def finish(self, queue: Queue) -> None:
        """Move the claimed RQ jobs to finished (their real status is in the job record); ones
        the runner never took (the lead job failed before its function ran) go back to the
        front of the queue."""
        unused, self.runner.batch_extras = set(self.runner.batch_extras), []
        with self._lock:
            active, self.active = self.active, []
        for job, execution in active:
            with self.connection.pipeline() as pipe:
                execution.delete(job, pipe)
                if job.id in unused:
                    job.set_status(RQStatus.QUEUED, pipeline=pipe)
                    pipe.lpush(queue.key, job.id)
                else:
                    job.set_status(RQStatus.FINISHED, pipeline=pipe)
                    job.finished_job_registry.add(job, self.settings.result_ttl_s, pipeline=pipe)
                pipe.execute()


def run_batch(runner: JobRunner, job_ids: list[str]) -> list[str]:
    """Run ``job_ids`` (already claimed from the queue) as one batch; returns each final status.

    Each job is claimed in the job store and completed through ``runner.complete`` (its own
    result, metadata, webhook, metrics). A job canceled mid-batch is marked canceled at once and
    its samples keep being computed but are dropped; the others go on.
    """
    from model import pipeline

    statuses: dict[str, str] = {}
    members: list[JobSpec] = []
    for job_id in job_ids:
        spec = runner.claim(job_id)
        if isinstance(spec, str):
            statuses[job_id] = spec
        else:
            members.append(spec)
    models = runner.models.get(members[0].model) if members else None
    if len(members) > 1 and models is not None and runner.generate is pipeline.generate:
        _generate_together(runner, members, models)
    for spec in members:
        statuses[spec.id] = runner.complete(spec)
        runner.batch_results.pop(spec.id, None)
    return [statuses[job_id] for job_id in job_ids]


def _generate_together(runner: JobRunner, members: list[JobSpec], models: Any) -> None:
    """Fill ``runner.batch_results`` with each member's result (or exception to record)."""
    from model.pipeline import generate_batch
    from model.samplers import SamplingCancelled

    samples = sum(s.num_samples for s in members)
    stages = estimate_stage_bytes(models, samples, sr=members[0].super_resolution.enabled)
    stage = max(stages, key=lambda k: stages[k])
    if stages[stage] > runner.settings.batch_memory_mb * 2**20:
        what = ("its base stage" if stage == "base" else
                f"its SR stage ({sr_chunk_frames(models, samples)} frames a call)")
        error = JobFailed("batch_too_large", f"a batch of {len(members)} jobs ({samples} samples) "
                          f"needs about {stages[stage] // 2**20} MiB in {what} > "
                          f"MMD_BATCH_MEMORY_MB={runner.settings.batch_memory_mb}; lower "
                          "MMD_MAX_BATCH" + (" or MMD_SR_MAX_BATCH_FRAMES" if stage == "sr" else "")
                          + " or raise MMD_BATCH_MEMORY_MB")
        runner.batch_results.update({s.id: error for s in members})
        return

    def cancel_now(spec: JobSpec, fn: ProgressFn) -> ProgressFn:
        def progress(stage: str, step: int, total: int) -> None:
            try:
                fn(stage, step, total)
            except SamplingCancelled:
                runner.store.mark_canceled(spec.id)  # at once; the batch goes on without it
                raise

        return progress

    requests, fns = [], []
    for spec in members:
        sr_on = runner.sr_on(spec, models)
        requests.append(runner.request(spec, sr_on))
        fns.append(cancel_now(spec, runner._progress_fn(spec, sr_on)))
    metrics.JOBS_IN_PROGRESS.inc(len(members))
    try:
        results = generate_batch(requests, models, progress_fns=fns)
        for spec, result in zip(members, results):
            runner.batch_results[spec.id] = (
                result if result is not None else SamplingCancelled("canceled by request"))
    except Exception as exc:  # noqa: BLE001 - every member records it
        runner.batch_results.update({s.id: exc for s in members})
    finally:
        metrics.JOBS_IN_PROGRESS.dec(len(members))

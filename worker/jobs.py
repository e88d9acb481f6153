"""The RQ job function, ``worker.jobs.run_job(job_id)``.

RQ imports it by name; it runs inside :class:`worker.worker.MMDWorker`, which installs the
process's :class:`~worker.runner.JobRunner` (models loaded once) with :func:`install` first.
"""

from __future__ import annotations

from rq import get_current_job

from core.contract import Progress
from worker.batching import run_batch
from worker.runner import JobRunner

_RUNNER: JobRunner | None = None


def install(runner: JobRunner | None) -> None:
    """Set (or clear) the runner that :func:`run_job` uses in this process."""
    global _RUNNER
    _RUNNER = runner


def _save_meta(progress: Progress) -> None:
    job = get_current_job()
    if job is not None:
        job.meta["progress"] = progress.model_dump()
        job.save_meta()


def run_job(job_id: str) -> str:
    """Run job ``job_id``; returns its final status."""
    if _RUNNER is None:
        raise RuntimeError("no JobRunner installed: run jobs with `mmd worker` (MMDWorker), "
                           "which loads the models first")
    runner = _RUNNER
    previous = runner.on_progress
    runner.on_progress = _save_meta
    try:
        extras, runner.batch_extras = runner.batch_extras, []
        if extras:  # claimed by the worker's batcher: run them with this job as one batch
            return run_batch(runner, [job_id, *extras])[0]
        return runner.run(job_id)
    finally:
        runner.on_progress = previous

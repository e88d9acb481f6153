"""The RQ function name of a job, ``worker.jobs.run_job(job_id)`` (``core.store.JOB_FUNCTION``).

The gateway enqueues jobs under this name; :class:`worker.worker.MMDWorker` runs every job it
dequeues through its own ``JobRunner`` (``MMDWorker.run``), so this function only runs when a
plain ``rq worker`` takes the job, which cannot: it has no models loaded.
"""

from __future__ import annotations


def run_job(job_id: str) -> str:
    raise RuntimeError(f"job {job_id} was taken by a plain RQ worker; run jobs with `mmd worker` "
                       "(MMDWorker), which loads the models once and runs them")

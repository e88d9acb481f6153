"""Dynamic batching: compatibility keys, per-sample window shifts, the claim logic against a real
redis-server, cancel of one batch member, and batched == alone with the tiny model on CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from redis import Redis
from rq.job import Job
from rq.job import JobStatus as RQStatus

from core.contract import JobStatus
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore
from model.attention import CrossAttention, ShiftSource
from model.pipeline import GenerationRequest, batch_key, generate, generate_batch
from model.samplers import SamplerSpec
from tests.helpers.jobs import make_spec
from worker.batching import Batcher
from worker.memory import estimate_batch_bytes
from worker.runner import JobRunner
from worker.sampling import spec_key

FAST = dict(base_sampler=SamplerSpec(steps=2, order=2), sr_sampler=SamplerSpec(name="ddim",
                                                                               steps=2))


# --- compatibility -------------------------------------------------------------------------
def test_spec_key_groups_only_independent_compatible_jobs() -> None:
    a, b = make_spec(seed=1), make_spec(seed=2)
    assert spec_key(a) is not None and spec_key(a) == spec_key(b)  # seeds may differ
    assert spec_key(make_spec(sampler=SamplerParams(steps=4))) != spec_key(a)
    assert spec_key(make_spec(num_samples=2)) != spec_key(a)
    assert spec_key(make_spec(model="other")) != spec_key(a)
    assert spec_key(make_spec(super_resolution=SuperResolutionParams(steps=3))) != spec_key(a)
    assert spec_key(make_spec(mode="video-to-audio", input_key="x.mp4")) is None  # grad mean
    assert spec_key(make_spec(sampler=SamplerParams(method="adaptive", order=2))) is None  # max E
    assert spec_key(make_spec(super_resolution=SuperResolutionParams(sampler="ddpm"))) is None


def test_pipeline_batch_key_and_refusal(tiny: Any) -> None:
    joint = GenerationRequest(seed=1, **FAST)
    assert batch_key(joint) == batch_key(GenerationRequest(seed=9, **FAST))
    assert batch_key(GenerationRequest(base_sampler=SamplerSpec(method="adaptive",
                                                                order=2))) is None
    assert batch_key(GenerationRequest(sr_sampler=SamplerSpec(name="ddim", steps=2,
                                                              eta=0.5))) is None
    other = GenerationRequest(seed=2, base_sampler=SamplerSpec(steps=4, order=2))
    with pytest.raises(ValueError, match="cannot share a batch"):
        generate_batch([joint, other], tiny)


# --- per-sample window shifts --------------------------------------------------------------
def test_per_sample_shifts_equal_each_sample_alone() -> None:
    torch.manual_seed(0)
    mod = CrossAttention(64, 2, window=2, shift=True).eval()
    for p in mod.parameters():  # the output projections are zero-initialised
        torch.nn.init.normal_(p, std=0.2)
    video, audio = torch.randn(3, 4, 64, 3, 3), torch.randn(3, 64, 70)  # 70 = 4*17 + 2 rest
    with torch.no_grad():
        out_v, out_a = mod(video, audio, [torch.tensor([0, 2, 1])])
        for i, s in enumerate([0, 2, 1]):
            ov, oa = mod(video[i:i + 1], audio[i:i + 1], [s])
            torch.testing.assert_close(out_v[i:i + 1], ov, rtol=0, atol=1e-5)
            torch.testing.assert_close(out_a[i:i + 1], oa, rtol=0, atol=1e-5)
        assert not torch.allclose(out_v[1:2], mod(video[1:2], audio[1:2], [0])[0])


def test_shift_groups_draw_each_jobs_own_sequence() -> None:
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    alone = [[ShiftSource(None, torch.Generator().manual_seed(s)).next("x", 6, True)
              for _ in range(1)] for s in (1, 2, 3)]
    src = ShiftSource(None, None, groups=[(gens[0], 1), (gens[1], 2), (gens[2], 1)])
    got = src.next("x", 6, True)
    draws = [a[0] for a in alone]
    if len(set(draws)) == 1:
        assert got == draws[0]
    else:
        assert got.tolist() == [draws[0], draws[1], draws[1], draws[2]]
    assert src.next("y", 0, True) == 0  # unshifted block: no draw, shared int


# --- batched == alone ----------------------------------------------------------------------
@pytest.mark.parametrize("base", [FAST["base_sampler"],
                                  SamplerSpec(name="ddim", steps=3, resample=2)])
def test_batched_equals_alone_within_float_rounding(tiny: Any, base: SamplerSpec) -> None:
    """Tolerance: a batched conv/matmul may sum in another order than batch 1 (oneDNN picks
    kernels by shape), so the float sample differs by ~1e-6 relative; after uint8 truncation a
    pixel can flip by one level. Measured (tiny, 4 jobs): audio <= 4e-5, <= 3e-5 of pixels by 1.
    Resampled DDIM draws its re-noising per job from the job's own generator, so it batches too."""
    settings = {**FAST, "base_sampler": base}
    requests = [GenerationRequest(seed=s, num_samples=n, **settings)
                for s, n in ((11, 1), (12, 1))]
    alone = [generate(r, tiny) for r in requests]
    batched = generate_batch(requests, tiny)
    for a, b in zip(alone, batched, strict=False):
        assert b is not None and b.batch_size == 2 and b.frames.shape == a.frames.shape
        diff = np.abs(a.frames.astype(int) - b.frames.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
        assert np.abs(a.audio - b.audio).max() <= 2e-4
    # the jobs differ from each other (own seeds), far beyond the rounding above
    assert np.abs(alone[0].audio - alone[1].audio).max() > 0.05


def test_one_canceled_member_is_dropped_others_continue(tiny: Any) -> None:
    calls: list[int] = []

    def cancel_at_2(stage: str, step: int, total: int) -> None:
        from model.samplers import SamplingCancelled

        calls.append(step)
        if step >= 1:
            raise SamplingCancelled("test")

    requests = [GenerationRequest(seed=s, super_resolution=False, **FAST) for s in (1, 2)]
    out = generate_batch(requests, tiny, progress_fns=[None, cancel_at_2])
    assert out[0] is not None and out[1] is None and calls == [1]  # not called after cancel


# --- the worker side: claim and run against a real Redis -----------------------------------
def _runner(settings: Settings, store: JobStore, tiny: Any) -> JobRunner:
    from model.pipeline import generate_batch

    return JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                     models={"default": tiny}, generate_batch=generate_batch)


def _enqueue(store: JobStore, **kw: Any) -> str:
    spec = make_spec(**kw)
    store.create_and_enqueue(spec)
    return spec.id


def test_claim_takes_compatible_jobs_atomically(settings: Settings, store: JobStore,
                                                 redis_conn: Redis, tiny: Any) -> None:
    settings = settings.model_copy(update={"max_batch": 3, "batch_wait_ms": 0})
    lead = _enqueue(store, seed=1)
    odd = _enqueue(store, seed=2, sampler=SamplerParams(steps=4))
    b, c, d = (_enqueue(store, seed=s) for s in (3, 4, 5))
    queue = store.queue
    assert redis_conn.lrem(queue.key, 1, lead) == 1  # what RQ's dequeue did
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    claimed = batcher.claim(Job.fetch(lead, connection=redis_conn), queue, ttl=30)
    assert claimed == [b, c]
    assert queue.get_job_ids() == [odd, d]
    started = queue.started_job_registry.get_job_ids()
    assert set(started) == {b, c}
    # another worker cannot take the same jobs: they are gone from the queue list
    other = Batcher(_runner(settings, store, tiny), redis_conn, "w2")
    assert other.claim(Job.fetch(lead, connection=redis_conn), queue, ttl=30) == [d]
    assert store.claim(b)  # as if the runner took b but never reached c (the batch ended early)
    batcher.finish(queue)
    assert queue.started_job_registry.get_job_ids() == [d]
    assert Job.fetch(b, connection=redis_conn).get_status() == RQStatus.FINISHED
    assert queue.get_job_ids() == [c, odd] and store.status(c) == JobStatus.queued


def test_claim_failing_midway_leaves_the_job_queued(settings: Settings, store: JobStore,
                                                   redis_conn: Redis, tiny: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker dying between taking a job off the queue and registering it started must not
    lose it: both happen in one transaction, so an error before EXEC leaves it queued."""
    settings = settings.model_copy(update={"max_batch": 2, "batch_wait_ms": 0})
    lead, other = _enqueue(store, seed=1), _enqueue(store, seed=2)
    queue = store.queue
    assert redis_conn.lrem(queue.key, 1, lead) == 1

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("worker died here")

    monkeypatch.setattr("worker.batching.Execution.create", crash)
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    with pytest.raises(RuntimeError, match="died"):
        batcher.claim(Job.fetch(lead, connection=redis_conn), queue, ttl=30)
    assert queue.get_job_ids() == [other]  # still queued: another worker will run it
    assert queue.started_job_registry.get_job_ids() == []
    assert Job.fetch(other, connection=redis_conn).get_status() == RQStatus.QUEUED


def test_a_long_batch_wait_keeps_the_claimed_jobs_started(settings: Settings, store: JobStore,
                                                          redis_conn: Redis, tiny: Any) -> None:
    """Waiting longer than the started-registry TTL for more jobs must not let the jobs already
    claimed expire (they would be retried while still running)."""
    settings = settings.model_copy(update={"max_batch": 3, "batch_wait_ms": 3500})
    lead, b = _enqueue(store, seed=1), _enqueue(store, seed=2)
    queue = store.queue
    assert redis_conn.lrem(queue.key, 1, lead) == 1
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    assert batcher.claim(Job.fetch(lead, connection=redis_conn), queue, ttl=2) == [b]
    # claimed at the start of a 3.5 s wait with a 2 s TTL: only renewals keep it in the registry
    queue.started_job_registry.cleanup()
    assert queue.started_job_registry.get_job_ids() == [b]
    assert queue.get_job_ids() == []


def test_claim_respects_the_memory_budget(settings: Settings, store: JobStore,
                                          redis_conn: Redis, tiny: Any) -> None:
    one = estimate_batch_bytes(tiny, 1)
    mb = -(-2 * one // 2**20)  # room for exactly two jobs (rounded up to MiB)
    settings = settings.model_copy(update={"max_batch": 8, "batch_wait_ms": 0,
                                           "batch_memory_mb": mb})
    ids = [_enqueue(store, seed=s) for s in range(4)]
    redis_conn.lrem(store.queue.key, 1, ids[0])
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    claimed = batcher.claim(Job.fetch(ids[0], connection=redis_conn), store.queue, ttl=30)
    assert len(claimed) + 1 == (mb * 2**20) // one < 4  # stopped by the budget, not the limit
    # a batch over the budget is refused with a clear error per job
    small = settings.model_copy(update={"batch_memory_mb": 1})
    runner = _runner(small, store, tiny)
    statuses = runner.run_many([ids[0], *claimed])
    assert statuses == ["failed"] * len(statuses)
    view = store.view(ids[0])
    assert view is not None and view.error is not None and view.error.code == "batch_too_large"
    assert "MMD_BATCH_MEMORY_MB" in view.error.message


def test_run_many_completes_each_job_and_cancels_one(settings: Settings, store: JobStore,
                                                      tiny: Any) -> None:
    fast = dict(sampler=SamplerParams(steps=2, order=2),
                super_resolution=SuperResolutionParams(enabled=False))
    ids = [_enqueue(store, seed=s, **fast) for s in (1, 2, 3)]
    runner = _runner(settings, store, tiny)
    canceled_at: list[str] = []

    def on_progress(progress: Any) -> None:  # cancel job 2 during the base stage
        # steps=2, order 2 singlestep: one update, reported as step 2 of 2 (sampler steps)
        if progress.stage == "base" and progress.step >= 1 and not canceled_at:
            store.cancel(ids[1])
            canceled_at.append("base")

    runner.on_progress = on_progress
    statuses = runner.run_many(ids)
    assert statuses == ["succeeded", "canceled", "succeeded"]
    for job_id in (ids[0], ids[2]):
        view = store.view(job_id)
        assert view is not None and view.result is not None
        assert view.result.batch_size == 3 and view.result.nfe["base"] == 2
    assert store.status(ids[1]) == JobStatus.canceled

"""Dynamic batching vs memory: the estimate covers the base stage and the SR chunk, and a batch
that would not fit is not claimed, or, asked for directly, fails each job with ``batch_too_large``
naming the stage and the setting to change (real redis-server, real JobRunner.run_many, tiny
preset)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from redis import Redis
from rq.job import Job

from core.contract import JobStatus
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore
from tests.helpers.jobs import make_spec
from worker.batching import Batcher
from worker.memory import estimate_batch_bytes, estimate_stage_bytes
from worker.runner import JobRunner

MIB = 2**20
BASE_FAST = SamplerParams(name="dpm_solver", steps=1, order=1)


def _runner(settings: Settings, store: JobStore, models: Any) -> JobRunner:
    from model.pipeline import generate_batch

    return JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                     models={"default": models}, generate_batch=generate_batch)


def _enqueue(store: JobStore, seed: int, sr: bool) -> str:
    spec = make_spec(seed=seed, sampler=BASE_FAST,
                     super_resolution=SuperResolutionParams(enabled=sr, steps=1))
    store.create_and_enqueue(spec)
    return spec.id


def test_sr_chunk_grows_with_the_batch_only_up_to_the_chunk_size(tiny: Any) -> None:
    frames = tiny.unet_cfg.video_size[0]  # 8 frames a clip; default chunk 16 frames
    sr = [estimate_stage_bytes(tiny, n)["sr"] for n in (1, 2, 3)]
    assert sr[1] == 2 * sr[0] and sr[2] == sr[1]  # 8 frames, then 16, then still 16
    wide = dataclasses.replace(tiny, sr_batch_frames=4 * frames)  # MMD_SR_MAX_BATCH_FRAMES=32
    assert [estimate_stage_bytes(wide, n)["sr"] for n in (1, 4, 8)] == [sr[0], 4 * sr[0],
                                                                        4 * sr[0]]
    base = [estimate_stage_bytes(tiny, n)["base"] for n in (1, 3)]
    assert base[1] == 3 * base[0]  # the base stage is one batch: linear in samples
    assert "sr" not in estimate_stage_bytes(tiny, 2, sr=False)
    assert estimate_batch_bytes(tiny, 2, sr=False) == 2 * base[0]
    assert estimate_batch_bytes(tiny, 2) == max(2 * base[0], sr[1])


def test_a_batch_whose_sr_chunk_does_not_fit_is_not_claimed_and_is_refused(
        settings: Settings, store: JobStore, redis_conn: Redis, tiny: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    two = estimate_stage_bytes(tiny, 2)
    mb = (two["sr"] - 1) // MIB  # the base stage of 2 jobs fits, their SR chunk does not
    assert two["base"] <= mb * MIB < two["sr"]
    settings = settings.model_copy(update={"max_batch": 4, "batch_wait_ms": 0,
                                           "batch_memory_mb": mb})
    ids = [_enqueue(store, seed, sr=True) for seed in (1, 2)]
    redis_conn.lrem(store.queue.key, 1, ids[0])  # what RQ's dequeue did
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    with caplog.at_level(logging.WARNING, logger="worker.batching"):
        assert batcher.claim(Job.fetch(ids[0], connection=redis_conn), store.queue, ttl=30) == []
    assert store.queue.get_job_ids() == [ids[1]]  # left for the next dequeue
    assert f"MMD_BATCH_MEMORY_MB={mb} cannot hold 2 jobs" in caplog.text  # said once, not silent

    # asked for directly (as after a config change between claim and run): every job fails
    redis_conn.lrem(store.queue.key, 1, ids[1])
    assert _runner(settings, store, tiny).run_many(ids) == ["failed", "failed"]
    for job_id in ids:
        view = store.view(job_id)
        assert view is not None and view.error is not None
        assert view.error.code == "batch_too_large"
        message = view.error.message
        assert "SR stage (16 frames a call)" in message and f"MMD_BATCH_MEMORY_MB={mb}" in message
        assert "MMD_SR_MAX_BATCH_FRAMES" in message and "MMD_MAX_BATCH" in message


def test_fewer_sr_frames_a_call_or_no_sr_lets_the_same_batch_run(
        settings: Settings, store: JobStore, redis_conn: Redis, tiny: Any) -> None:
    two = estimate_stage_bytes(tiny, 2)
    mb = (two["sr"] - 1) // MIB
    settings = settings.model_copy(update={"max_batch": 4, "batch_wait_ms": 0,
                                           "batch_memory_mb": mb})
    narrow = dataclasses.replace(tiny, sr_batch_frames=4)  # MMD_SR_MAX_BATCH_FRAMES=4
    assert estimate_batch_bytes(narrow, 2) <= mb * MIB < estimate_batch_bytes(tiny, 2)
    ids = [_enqueue(store, seed, sr=False) for seed in (1, 2)]  # SR off: the base stage fits
    redis_conn.lrem(store.queue.key, 1, ids[0])
    batcher = Batcher(_runner(settings, store, tiny), redis_conn, "w1")
    assert batcher.claim(Job.fetch(ids[0], connection=redis_conn), store.queue, ttl=30) == [ids[1]]
    assert batcher.runner.run_many(ids) == ["succeeded", "succeeded"]
    batcher.finish(store.queue)
    for job_id in ids:
        view = store.view(job_id)
        assert view is not None and view.result is not None and view.result.batch_size == 2
        assert store.status(job_id) == JobStatus.succeeded


def test_the_base_stage_alone_can_refuse_naming_the_base_stage(
        settings: Settings, store: JobStore, tiny: Any) -> None:
    three = estimate_stage_bytes(tiny, 3, sr=False)["base"]
    settings = settings.model_copy(update={"max_batch": 4, "batch_memory_mb": three // MIB - 1})
    ids = [_enqueue(store, seed, sr=False) for seed in (1, 2, 3)]
    assert _runner(settings, store, tiny).run_many(ids) == ["failed"] * 3
    view = store.view(ids[2])
    assert view is not None and view.error is not None and view.error.code == "batch_too_large"
    assert "in its base stage" in view.error.message
    assert "MMD_SR_MAX_BATCH_FRAMES" not in view.error.message

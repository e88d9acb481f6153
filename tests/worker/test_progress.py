"""Job progress (worker/progress.py): steps in the request's unit, a fraction weighted by
expected compute, and the stage of a claimed job; the last check runs the real tiny pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from core.contract import JobStatus, Progress
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore
from model.config import SRConfig, UNetConfig
from tests.helpers.jobs import make_spec
from worker.progress import StageWeights, sr_flops, stage_weights, step_counter, unet_flops
from worker.runner import JobRunner

OFFICIAL = SamplerParams(name="dpm_solver", steps=20, order=3, method="singlestep")


def test_singlestep_updates_count_as_the_steps_they_take() -> None:
    count = step_counter(OFFICIAL)
    # 20 steps, order 3: seven updates of 3, 3, 3, 3, 3, 3, 2 steps
    assert [count(i, 7) for i in range(1, 8)] == [
        (3, 20), (6, 20), (9, 20), (12, 20), (15, 20), (18, 20), (20, 20)]
    multistep = step_counter(SamplerParams(name="dpm_solver++", steps=15, method="multistep"))
    assert multistep(4, 15) == (4, 15)
    assert step_counter(SamplerParams(name="ddim", steps=25))(25, 25) == (25, 25)


def test_weights_follow_evaluations_times_flops() -> None:
    """The official sizes: FLOPs counted on the meta device; SR is ~93 % of a fast joint job."""
    landscape, official_sr = UNetConfig.preset("landscape"), SRConfig.preset("official")
    base, sr = unet_flops(landscape), sr_flops(official_sr)
    assert base is not None and sr is not None
    # README: 1.323 TFLOP per base forward by hand (attention counted differently); within 10 %
    assert 1.2e12 < base < 1.4e12 and 1.1e12 < sr < 1.4e12
    models = type("M", (), {"unet_cfg": landscape, "sr_cfg": official_sr})()
    spec = make_spec(sampler=SamplerParams(name="dpm_solver++", steps=15, method="multistep"),
                     super_resolution=SuperResolutionParams(sampler="dpm_solver++", steps=12))
    w = stage_weights(spec, models, sr_on=True)
    expected_sr = 12 * 16 * sr / (12 * 16 * sr + 15 * base)
    assert w.sr == pytest.approx(expected_sr) and 0.9 < w.sr < 0.96
    assert w.base + w.sr == pytest.approx(1.0)
    assert stage_weights(spec, models, sr_on=False) == StageWeights(base=1.0, sr=0.0)
    # gradient guidance: a backward per evaluation counts as 2 forwards
    cond = make_spec(mode="video-to-audio", sampler=OFFICIAL,
                     super_resolution=SuperResolutionParams(sampler="dpm_solver++", steps=12))
    wc = stage_weights(cond, models, sr_on=True)
    assert wc.base / wc.sr == pytest.approx(3 * 20 * base / (12 * 16 * sr))
    # a prompt adds a backward per evaluation to a joint job; a guided one shares its backward
    wp = stage_weights(spec.model_copy(update={"prompt": "red"}), models, sr_on=True)
    assert wp.base / wp.sr == pytest.approx(3 * 15 * base / (12 * 16 * sr))
    wcp = stage_weights(cond.model_copy(update={"prompt": "red"}), models, sr_on=True)
    assert wcp == wc


def test_fraction_is_monotone_across_stages() -> None:
    w = StageWeights(base=0.1, sr=0.9)
    seq = [w.fraction("base", s, 20) for s in range(21)] + [w.fraction("sr", s, 12)
                                                            for s in range(13)]
    assert seq == sorted(seq) and seq[20] == pytest.approx(0.1) and seq[-1] == 1.0


def test_a_claimed_job_is_never_running_with_stage_queued(store: JobStore) -> None:
    spec = make_spec()
    store.create_and_enqueue(spec)
    assert store.view(spec.id).progress.stage == "queued"  # type: ignore[union-attr]
    assert store.claim(spec.id)
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.running
    assert view.progress.stage == "starting"


def test_real_pipeline_reports_the_requested_steps(settings: Settings, store: JobStore,
                                                   tiny: Any) -> None:
    from model.pipeline import generate_batch

    seen: list[Progress] = []
    runner = JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                       models={"default": tiny}, generate_batch=generate_batch,
                       on_progress=seen.append)
    spec = make_spec(sampler=OFFICIAL,
                     super_resolution=SuperResolutionParams(sampler="ddim", steps=2))
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    base = [p for p in seen if p.stage == "base"]
    sr = [p for p in seen if p.stage == "sr"]
    assert [(p.step, p.total) for p in base][-1] == (20, 20)  # not 7 updates
    assert all(p.total == 20 for p in base) and len(base) == 7
    assert sr[-1].step == sr[-1].total and sr[-1].total % 2 == 0
    weights = stage_weights(spec, tiny, sr_on=True)
    assert base[-1].fraction == pytest.approx(weights.base, abs=1e-4)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and sr[-1].fraction == 1.0

"""Sampling presets through the gateway (real redis-server): the stored JobSpec holds the resolved
sampler settings and the preset name; fields the client sends override the preset; limits apply
to the resolved values; MMD_SAMPLING_PRESET picks the default."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from core.contract import JobSpec
from core.sampling import PRESETS, SamplerParams, SuperResolutionParams, default_guidance_scale
from core.settings import ModelSpec, Settings
from core.store import JobStore
from service.app import create_app
from service.schemas import GenerateRequest
from tests.helpers.media import write_clip

FAST_JOINT = (SamplerParams(name="dpm_solver++", steps=15, order=3, method="multistep"),
              SuperResolutionParams(sampler="dpm_solver++", steps=12))
OFFICIAL_JOINT = (SamplerParams(name="dpm_solver", steps=20, order=3, method="singlestep"),
                  SuperResolutionParams(sampler="ddim", steps=25))


def _spec(client: TestClient, store: JobStore, body: dict) -> JobSpec:
    r = client.post("/generate", json=body)
    assert r.status_code == 202, r.text
    spec = store.spec(r.json()["id"])
    assert spec is not None
    assert client.get(f"/jobs/{spec.id}").json()["request"] == spec.model_dump(mode="json")
    return spec


def test_default_is_fast_and_official_is_one_field_away(settings: Settings,
                                                        store: JobStore) -> None:
    client = TestClient(create_app(settings))
    fast = _spec(client, store, {"seed": 1})
    assert fast.preset == "fast"
    assert (fast.sampler, fast.super_resolution) == FAST_JOINT
    official = _spec(client, store, {"seed": 1, "preset": "official"})
    assert official.preset == "official"
    assert (official.sampler, official.super_resolution) == OFFICIAL_JOINT
    assert PRESETS[("fast", "joint")] == FAST_JOINT
    assert PRESETS[("official", "joint")] == OFFICIAL_JOINT


def test_setting_picks_the_default_preset(settings: Settings, store: JobStore) -> None:
    client = TestClient(create_app(settings.model_copy(update={"sampling_preset": "official"})))
    spec = _spec(client, store, {})
    assert spec.preset == "official" and (spec.sampler, spec.super_resolution) == OFFICIAL_JOINT
    assert _spec(client, store, {"preset": "fast"}).sampler == FAST_JOINT[0]


def test_explicit_fields_override_only_themselves(settings: Settings, store: JobStore) -> None:
    client = TestClient(create_app(settings))
    spec = _spec(client, store, {"sampler": {"steps": 7}, "super_resolution": {"sampler": "ddpm"}})
    assert spec.preset == "fast"
    assert spec.sampler == FAST_JOINT[0].model_copy(update={"steps": 7})
    assert spec.super_resolution == SuperResolutionParams(sampler="ddpm", steps=12)
    spec = _spec(client, store, {"preset": "official", "sampler": {"name": "ddim", "eta": 0.5},
                                 "super_resolution": {"steps": 9, "enabled": False}})
    assert spec.sampler == SamplerParams(name="ddim", steps=20, order=3, method="singlestep",
                                         eta=0.5)
    assert spec.super_resolution == SuperResolutionParams(enabled=False, sampler="ddim", steps=9)
    # null means "the preset's"
    spec = _spec(client, store, {"sampler": {"steps": None, "order": 2}})
    assert spec.sampler == FAST_JOINT[0].model_copy(update={"order": 2})


def test_limits_apply_to_resolved_values(settings: Settings, store: JobStore) -> None:
    tight = TestClient(create_app(settings.model_copy(update={"max_steps": 16,
                                                              "max_sr_steps": 20})))
    assert tight.post("/generate", json={}).status_code == 202  # fast: 15 + 12
    r = tight.post("/generate", json={"preset": "official"})  # 20 base steps from the preset
    assert r.status_code == 422 and "sampler.steps=20" in r.text and "MMD_MAX_STEPS" in r.text
    r = tight.post("/generate", json={"preset": "official", "sampler": {"steps": 10}})
    assert r.status_code == 422 and "super_resolution.steps=25" in r.text
    ok = tight.post("/generate", json={"preset": "official", "sampler": {"steps": 10},
                                       "super_resolution": {"steps": 20}})
    assert ok.status_code == 202, ok.text


def test_conditional_presets(settings: Settings, store: JobStore, tmp_path: Path) -> None:
    client = TestClient(create_app(settings.model_copy(update={"max_steps": 1000})))
    clip = write_clip(tmp_path / "clip.mp4")
    specs = {}
    for preset in ("fast", "official"):
        with open(clip, "rb") as fh:
            r = client.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                            data={"preset": preset, "super_resolution.enabled": "false"})
        assert r.status_code == 202, r.text
        specs[preset] = store.spec(r.json()["id"])
    fast, official = specs["fast"], specs["official"]
    assert fast.preset == "fast" and fast.sampler == SamplerParams(name="ddim", steps=10,
                                                                   resample=2)
    assert official.sampler.name == "ddpm" and official.sampler.steps == 1000
    for spec in (fast, official):  # the tiny preset's scale: the official models' 3.0
        assert (spec.guidance, spec.guidance_scale) == ("gradient", 3.0)
        assert spec.super_resolution.enabled is False
    assert official.super_resolution.steps == 25 and fast.super_resolution.steps == 12


def test_resample_is_a_ddim_field_with_a_limit(settings: Settings, store: JobStore,
                                               tmp_path: Path) -> None:
    """The fast conditional preset resamples (DDIM 10 x 2); a request may set ``resample`` on
    DDIM (JSON or a multipart form field), a non-DDIM sampler runs once per step unless it asks
    for resampling, which is a 422 naming the field; above MMD_MAX_RESAMPLE is a 422."""
    client = TestClient(create_app(settings.model_copy(update={"max_resample": 3})))
    spec = _spec(client, store, {"sampler": {"name": "ddim", "resample": 3}})
    assert (spec.sampler.name, spec.sampler.resample) == ("ddim", 3)
    assert _spec(client, store, {}).sampler.resample == 1  # joint fast: DPM-Solver++
    for body, field, words in (
            ({"sampler": {"name": "ddim", "resample": 4}}, "sampler.resample",
             ("sampler.resample=4 is above the limit 3", "MMD_MAX_RESAMPLE")),
            ({"sampler": {"resample": 2}}, "sampler.resample",
             ("sampler.resample=2 needs sampler.name='ddim'",))):
        r = client.post("/generate", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field
        assert all(w in r.json()["error"]["message"] for w in words)
    clip = write_clip(tmp_path / "clip.mp4")

    def post(**data: str) -> JobSpec:
        with open(clip, "rb") as fh:
            r = client.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                            data={"super_resolution.enabled": "false", **data})
        assert r.status_code == 202, r.text
        got = store.spec(r.json()["id"])
        assert got is not None
        return got

    assert post().sampler == SamplerParams(name="ddim", steps=10, resample=2)
    assert post(**{"sampler.resample": "1"}).sampler.resample == 1
    assert post(**{"sampler.name": "dpm_solver"}).sampler.resample == 1


def test_default_limits_allow_the_official_conditional_loop() -> None:
    assert Settings().max_steps >= PRESETS[("official", "conditional")][0].steps
    assert Settings().max_sr_steps >= PRESETS[("official", "joint")][1].steps
    assert Settings().sampling_preset == "fast"


def test_unknown_preset_is_422(settings: Settings) -> None:
    r = TestClient(create_app(settings)).post("/generate", json={"preset": "turbo"})
    assert r.status_code == 422 and "fast" in r.text and "official" in r.text
    assert GenerateRequest().preset is None  # None = MMD_SAMPLING_PRESET


def test_preset_order_is_capped_at_the_steps_but_a_given_order_is_not(
        settings: Settings, store: JobStore) -> None:
    client = TestClient(create_app(settings))
    spec = _spec(client, store, {"sampler": {"steps": 2}})  # fast: multistep order 3
    assert (spec.sampler.steps, spec.sampler.order, spec.sampler.method) == (2, 2, "multistep")
    assert _spec(client, store, {"sampler": {"steps": 1}}).sampler.order == 1
    official = _spec(client, store, {"preset": "official", "sampler": {"steps": 2}})
    assert official.sampler.order == 3  # singlestep: any order runs with any steps
    r = client.post("/generate", json={"sampler": {"steps": 2, "order": 3}})
    assert r.status_code == 422 and "sampler.steps=2 is below sampler.order=3" in r.text
    r = client.post("/generate", json={"sampler": {"method": "adaptive"}})
    assert r.status_code == 422 and "order=2" in r.text


def test_guidance_scale_defaults_to_the_models_and_is_limited(
        settings: Settings, store: JobStore, tmp_path: Path) -> None:
    """No ``guidance_scale``: the job stores its model's default (demo 1100, tiny 3.0); one that
    is sent is kept; above MMD_MAX_GUIDANCE_SCALE is a 422 naming the field."""
    models = {"default": ModelSpec(preset="tiny"), "demo": ModelSpec(preset="demo")}
    client = TestClient(create_app(settings.model_copy(update={
        "models": models, "max_guidance_scale": 500.0})))
    clip = write_clip(tmp_path / "clip.mp4")

    def post(**data: str) -> object:
        with open(clip, "rb") as fh:
            return client.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                               data={"super_resolution.enabled": "false", **data})

    scales = {}
    for model, extra in (("demo", {}), ("default", {}), ("demo", {"guidance_scale": "7.5"})):
        r = post(model=model, **extra)
        assert r.status_code == 202, r.text
        spec = store.spec(r.json()["id"])
        assert spec is not None
        scales[(model, bool(extra))] = spec.guidance_scale
    assert scales == {("demo", False): default_guidance_scale("demo"),
                      ("default", False): default_guidance_scale("tiny"),
                      ("demo", True): 7.5}
    assert default_guidance_scale("demo") == 1100.0 and default_guidance_scale("tiny") == 3.0
    r = post(model="demo", guidance_scale="501")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "guidance_scale"
    assert "MMD_MAX_GUIDANCE_SCALE" in r.json()["error"]["message"]

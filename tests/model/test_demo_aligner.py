"""The shipped demo aligner (model/demo/aligner.py): integrity, prompts, accuracy on the world's
clips, and a prompted-generation quality regression on the shipped weights.

Thresholds sit a stated margin below values measured with exactly these settings on the
2-core CPU box (the numbers in the comments; generation is deterministic, so the margins only
absorb float rounding differences between CPUs and torch builds, which can flip an event).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.aligners import Aligner, load_aligner
from model.config import UNetConfig
from model.demo.aligner import DEFAULT_SCALE, DemoAligner, load_demo_aligner
from model.demo.scoring import score
from model.demo.train import base_geometry
from model.demo.train_aligner import accuracy, labelled_batch
from model.demo.weights_io import FILES, MANIFEST, WEIGHTS_DIR, load_demo_models, verify
from model.demo.world import COLOUR_NAMES, draw_events, render
from model.pipeline import GenerationRequest, generate
from worker.sampling import preset_specs

CFG = UNetConfig.preset("demo")


@pytest.fixture(scope="module")
def aligner() -> DemoAligner:
    a = load_aligner("demo", CFG)
    assert isinstance(a, DemoAligner)
    return a


@pytest.fixture(scope="module")
def demo_models():  # type: ignore[no-untyped-def]
    return load_demo_models(sr=False)


def test_shipped_aligner_is_listed_fp16_and_small(aligner: DemoAligner) -> None:
    paths = verify()
    assert "aligner" in paths
    sd = torch.load(paths["aligner"], weights_only=True)
    assert {v.dtype for v in sd.values()} == {torch.float16}
    params = sum(v.numel() for v in sd.values())
    assert 2_000 <= params <= 100_000, params
    assert isinstance(aligner, Aligner) and aligner.name == "demo"
    assert aligner.default_scale == DEFAULT_SCALE > 0


def test_tampered_aligner_is_refused(tmp_path: Path) -> None:
    for name in (*FILES.values(), MANIFEST):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    raw = bytearray((tmp_path / FILES["aligner"]).read_bytes())
    raw[-50] ^= 0xFF
    (tmp_path / FILES["aligner"]).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        verify(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_demo_aligner(CFG, weights=tmp_path / "missing.pt")


def test_prompts_are_the_colour_names(aligner: DemoAligner) -> None:
    assert aligner.check_prompt("  Red ") == "red"
    assert tuple(aligner.prompts) == COLOUR_NAMES
    with pytest.raises(ValueError, match="red, green, blue"):
        aligner.check_prompt("purple")


# Measured on 64 clips drawn with seed 7 (not the training generators): clean colour, pitch,
# lit, sounding 1.000 each. Margin 0.03 (about 12 of ~400 flash frames).
def test_accuracy_on_world_clips(aligner: DemoAligner) -> None:
    video, audio, labels = labelled_batch(64, base_geometry(CFG), torch.Generator().manual_seed(7))
    acc = accuracy(aligner, video, audio, labels)
    assert min(acc.values()) >= 0.97, acc


def test_score_prefers_the_clip_colour_and_is_per_sample(aligner: DemoAligner) -> None:
    """Clips whose flashes all have colour c score highest for prompt c; a clip's score and
    its gradient depend on that clip only."""
    geo = base_geometry(CFG)
    g = torch.Generator().manual_seed(11)
    clips = []
    for b in range(6):
        events = [replace(ev, colour=b % 3) for ev in draw_events(geo.frames, g)]
        clips.append(render(events, geo))
    video = torch.stack([v for v, _ in clips])
    audio = torch.stack([a for _, a in clips])
    scores = torch.stack([aligner.score(video, audio, c) for c in COLOUR_NAMES])  # [3, B]
    assert scores.argmax(0).tolist() == [b % 3 for b in range(6)], scores
    alone = aligner.score(video[:1], audio[:1], "red")
    torch.testing.assert_close(alone, scores[0, :1], atol=1e-5, rtol=1e-5)
    v = video.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(aligner.score(v, audio, "red")[0], v)
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0  # sample 0's score: own clip


def test_prompted_generation_counts_backward_passes(demo_models) -> None:  # type: ignore[no-untyped-def]
    base, _ = preset_specs("fast", "joint")
    res = generate(GenerationRequest(prompt="Red", super_resolution=False, base_sampler=base),
                   demo_models)
    assert res.nfe["base"] == base.steps and res.nfe["base_backward"] == base.steps
    plain = generate(GenerationRequest(super_resolution=False, base_sampler=base), demo_models)
    assert plain.nfe["base_backward"] == 0


# Quality regression (~30 s on the shared 2-core box): fast preset, no SR, 8 joint jobs per
# prompt (seeds 1000..1007, one batch each), the default scale (2.0). Measured with exactly this
# code path (2026-12-05): unguided sync 0.941, each colour's share of its 13 events 0.46 / 0.31 /
# 0.23 (red / green / blue); prompted red 0.909 of 11 events (sync 0.892), green 0.667 of 12
# (0.913), blue 0.923 of 13 (0.895): pooled 0.833 of 36 events, mean sync drop 0.041.
# Margins: pooled share >= 0.70 (5 events of 36 below the measurement); each prompt's share
# above its unguided share (measured gaps 0.36-0.69); mean sync within 0.08 of unguided
# (0.039 below the measured drop; the target is 0.05 on the 32-job bench rows with SR,
# where the drop was <= 0.041).
PROMPT_JOBS = 8
MIN_POOLED_SHARE = 0.70
SYNC_MARGIN = 0.08


def test_prompted_joint_quality(demo_models) -> None:  # type: ignore[no-untyped-def]
    base, _ = preset_specs("fast", "joint")
    plain = score(demo_models, "joint", base, None, n=PROMPT_JOBS, batched=True,
                  share_of=COLOUR_NAMES)
    hits = events = 0
    syncs = []
    for colour in COLOUR_NAMES:
        s = score(demo_models, "joint", base, None, n=PROMPT_JOBS, batched=True, prompt=colour)
        share = s.shares[colour]
        assert share.colour > plain.shares[colour].colour, (colour, share, plain.shares)
        assert s.nfe is not None and s.nfe["base_backward"] == s.nfe["base"] == base.steps
        hits += round(share.colour * share.events)
        events += share.events
        syncs.append(s.quality.sync)
    assert hits / events >= MIN_POOLED_SHARE, (hits, events)
    assert sum(syncs) / len(syncs) >= plain.quality.sync - SYNC_MARGIN, (syncs, plain.quality)


def test_train_and_export_keep_the_other_entries(tmp_path: Path, demo_models) -> None:  # type: ignore[no-untyped-def]
    """A few steps of `mmd train-demo --what aligner`'s trainer, then its export: the aligner
    entry is added with its sha256, the base and SR entries stay as they were."""
    import json

    from model.demo.train_aligner import AlignerSettings, train_aligner
    from model.demo.weights_io import export_aligner

    for name in (FILES["base"], FILES["sr"], MANIFEST):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    before = json.loads((tmp_path / MANIFEST).read_text())
    before["files"].pop("aligner", None)
    (tmp_path / MANIFEST).write_text(json.dumps(before))
    ck = train_aligner(AlignerSettings(steps=3, batch=4, pool=4, width=8),
                       demo_models.unet, demo_models.unet_cfg, tmp_path / "ck.pt",
                       progress=False)
    assert set(ck["accuracy"]) == {"clean", "estimates"}
    export_aligner(tmp_path, checkpoint=tmp_path / "ck.pt", command="test")
    after = json.loads((tmp_path / MANIFEST).read_text())
    assert after["files"]["base"] == before["files"]["base"]
    assert after["files"]["sr"] == before["files"]["sr"]
    assert after["files"]["aligner"]["command"] == "test"
    paths = verify(tmp_path)
    small = load_demo_aligner(CFG, weights=paths["aligner"])
    assert small.net.video_head.in_features == 16  # width 8, mean + max pooled

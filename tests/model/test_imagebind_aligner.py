"""The ImageBind aligner (model/aligners/imagebind.py) over a reduced-width ImageBindModel built
from the package's own classes (random init, saved and loaded through the real loading path):
loading, shapes, gradient flow, per-sample independence, preprocessing, prompt checks and the
errors for missing or wrong weights. The released imagebind_huge.pth is never needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.aligners import Aligner, load_aligner
from model.aligners.imagebind import (
    AUDIO_MEAN,
    AUDIO_STD,
    CLIP_MEAN,
    CLIP_STD,
    MAX_PROMPT_TOKENS,
    ImageBindAligner,
    audio_inputs,
    clip_frame_indices,
    load_imagebind_aligner,
    vision_inputs,
)
from model.config import UNetConfig

# every branch the package builds, at toy width (the loader drops depth, thermal and IMU)
TINY: dict[str, Any] = {
    "out_embed_dim": 16,
    "vision_embed_dim": 32, "vision_num_blocks": 2, "vision_num_heads": 2,
    "text_embed_dim": 32, "text_num_blocks": 2, "text_num_heads": 2,
    "audio_embed_dim": 32, "audio_num_blocks": 2, "audio_num_heads": 2,
    "depth_embed_dim": 16, "depth_num_blocks": 1, "depth_num_heads": 2,
    "thermal_embed_dim": 16, "thermal_num_blocks": 1, "thermal_num_heads": 2,
    "imu_embed_dim": 16, "imu_num_blocks": 1, "imu_num_heads": 2,
}
CFG = UNetConfig.preset("landscape")  # 16 frames of 64 x 64 at 10 fps, 25,600 samples at 16 kHz
PROMPT = "waves crashing on a beach"


def _package() -> None:
    from model.aligners.imagebind_pkg import PACKAGE, imagebind_modules

    try:
        imagebind_modules()
    except ImportError as exc:
        pytest.skip(f"{PACKAGE} is not installed ({exc}); see docs/imagebind.md")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _package()
    from model.aligners.imagebind_pkg import build_imagebind

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("imagebind") / "tiny.pth"
    torch.save(build_imagebind(TINY).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def aligner(tiny_weights: Path) -> ImageBindAligner:
    return load_imagebind_aligner(CFG, weights=tiny_weights, arch=TINY)


def clip(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    video = torch.rand(batch, *CFG.video_size, generator=gen) * 2 - 1
    audio = (torch.rand(batch, *CFG.audio_size, generator=gen) * 2 - 1) * 0.5
    return video, audio


def test_loads_as_an_aligner(aligner: ImageBindAligner) -> None:
    assert isinstance(aligner, Aligner)
    assert aligner.name == "imagebind" and aligner.default_scale > 0
    assert not aligner.model.training
    assert all(not p.requires_grad for p in aligner.model.parameters())
    # the loader keeps only the branches the aligner runs
    assert set(aligner.model.modality_trunks.keys()) == {"vision", "text", "audio"}


def test_score_shape_finite_and_gradients(aligner: ImageBindAligner) -> None:
    video, audio = clip(2, seed=1)
    video.requires_grad_()
    audio.requires_grad_()
    score = aligner.score(video, audio, PROMPT)
    assert score.shape == (2,) and score.dtype == torch.float32
    assert bool(torch.isfinite(score).all())
    assert bool((score.abs() <= 2.0 + 1e-5).all())  # a sum of two cosines
    score.sum().backward()
    assert video.grad is not None and audio.grad is not None
    assert bool(torch.isfinite(video.grad).all()) and bool(torch.isfinite(audio.grad).all())
    # gradient reaches exactly the frames of the four 2-frame clips: 0, 3, 4, 7, 8, 11, 12, 15
    per_frame = video.grad.abs().sum(dim=(2, 3, 4))
    used = [0, 3, 4, 7, 8, 11, 12, 15]
    assert bool((per_frame[:, used] > 0).all())
    assert bool((per_frame[:, [f for f in range(16) if f not in used]] == 0).all())
    # every sample of the 1.6 s waveform lies in one of the 158 fbank frames
    assert float((audio.grad[:, 0, :25520] != 0).float().mean()) > 0.99


def test_each_score_depends_on_its_own_clip_only(aligner: ImageBindAligner) -> None:
    video, audio = clip(3, seed=2)
    alone = aligner.score(video[:1], audio[:1], PROMPT)
    video.requires_grad_()
    audio.requires_grad_()
    batched = aligner.score(video, audio, PROMPT)
    torch.testing.assert_close(batched[:1], alone, rtol=0, atol=1e-5)
    batched[0].backward()
    assert video.grad is not None and audio.grad is not None
    assert float(video.grad[1:].abs().max()) == 0.0
    assert float(audio.grad[1:].abs().max()) == 0.0
    assert float(video.grad[0].abs().max()) > 0.0


def test_prompt_changes_the_score_and_is_embedded_once(aligner: ImageBindAligner) -> None:
    video, audio = clip(1, seed=3)
    with torch.no_grad():
        a = aligner.score(video, audio, PROMPT)
        b = aligner.score(video, audio, "a dog barking in the rain")
    assert not torch.allclose(a, b)
    assert aligner.text_embedding(PROMPT) is aligner.text_embedding(PROMPT)


def test_check_prompt(aligner: ImageBindAligner) -> None:
    assert aligner.check_prompt("  rain on a tin roof \n") == "rain on a tin roof"
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="non-empty"):
            aligner.check_prompt(bad)
    with pytest.raises(ValueError, match="characters"):
        aligner.check_prompt("a" * 301)
    with pytest.raises(ValueError, match=f"at most {MAX_PROMPT_TOKENS}"):
        aligner.check_prompt(" ".join(["a"] * (MAX_PROMPT_TOKENS + 1)))
    assert aligner.check_prompt(" ".join(["a"] * MAX_PROMPT_TOKENS))


def test_bad_shapes_are_refused(aligner: ImageBindAligner) -> None:
    video, audio = clip(2, seed=4)
    with pytest.raises(ValueError, match="one batch"):
        aligner.score(video, audio[:1], PROMPT)
    with pytest.raises(ValueError, match="one batch"):
        aligner.score(video[:, :, :1], audio, PROMPT)


def test_frame_sampling() -> None:
    assert clip_frame_indices(16, 4) == [[0, 3], [4, 7], [8, 11], [12, 15]]
    assert clip_frame_indices(16, 1) == [[0, 15]]  # ImageBind's loader on a 1.6 s file
    assert clip_frame_indices(3, 8) == [[0, 0], [1, 1], [2, 2]]


def test_vision_preprocessing() -> None:
    # mid-grey (0 in [-1, 1]) is 0.5, normalised with CLIP's mean and std per channel
    video = torch.zeros(1, 16, 3, 64, 64)
    x = vision_inputs(video, 4)
    assert x.shape == (1, 4, 3, 2, 224, 224)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(x.amax(dim=(0, 1, 3, 4, 5)), expected)
    torch.testing.assert_close(x.amin(dim=(0, 1, 3, 4, 5)), expected)
    # a wide frame is scaled on its short side and centre-cropped: a left-half-white frame
    # keeps white only left of the centre
    wide = -torch.ones(1, 2, 3, 64, 128)
    wide[..., :64] = 1.0
    y = vision_inputs(wide, 1)[0, 0, 0, 0]  # [224, 224]
    white = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert float(y[:, 0].mean()) == pytest.approx(white, abs=1e-4)
    assert float(y[:, -1].mean()) < 0.0


def test_audio_preprocessing() -> None:
    _, audio = clip(2, seed=5)
    x = audio_inputs(audio, 16000)
    assert x.shape == (2, 1, 1, 128, 204)
    # frames 158..203 are ImageBind's zero padding, normalised
    pad = (0.0 - AUDIO_MEAN) / AUDIO_STD
    torch.testing.assert_close(x[..., 158:], torch.full_like(x[..., 158:], pad))
    # every real frame differs from the padding in some mel bin
    assert bool(((x[..., :158] - pad).abs().amax(dim=-2) > 1e-3).all())
    # a 4 s waveform becomes 3 clips of 2 s; a 1.6 s one at 8 kHz is resampled to 16 kHz
    assert audio_inputs(torch.zeros(1, 1, 64000) + 0.1, 16000).shape == (1, 3, 1, 128, 204)
    t = torch.arange(25600, dtype=torch.float64) / 16000
    tone16 = (0.5 * torch.sin(2 * torch.pi * 500 * t)).reshape(1, 1, -1)
    tone8 = tone16[..., ::2]
    torch.testing.assert_close(audio_inputs(tone8, 8000), audio_inputs(tone16, 16000),
                               rtol=0, atol=1e-3)


def test_missing_weights_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"imagebind_huge\.pth.*aligner_weights"):
        load_aligner("imagebind", CFG)
    with pytest.raises(FileNotFoundError, match=r"not found: download imagebind_huge\.pth"):
        load_aligner("imagebind", CFG, weights=tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"(?s)could not read checkpoint .*imagebind_huge"):
        load_aligner("imagebind", CFG, weights=junk)


def test_wrong_weights_are_named(tiny_weights: Path) -> None:
    other = dict(TINY, vision_num_blocks=1)
    extra_block = r"0 missing keys \[\], 12 unexpected \['modality_trunks\.vision\.blocks\.1"
    with pytest.raises(ValueError, match=extra_block):
        load_imagebind_aligner(CFG, weights=tiny_weights, arch=other)
    wider = dict(TINY, audio_embed_dim=48)
    with pytest.raises(ValueError, match=r"(?s)size mismatch.*is it imagebind_huge\.pth"):
        load_imagebind_aligner(CFG, weights=tiny_weights, arch=wider)

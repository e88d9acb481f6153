"""The demo trainer: a resumed run is exactly the uninterrupted run; the loss can fall."""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import SRConfig, UNetConfig
from model.demo.train import Trainer, TrainSettings

# A micro base (8 frames of 8 x 8, 512 audio samples at 512 Hz) and SR (8 -> 16), a few
# tens of milliseconds per step.
MICRO = UNetConfig.preset("demo").with_(video_size=(8, 3, 8, 8), audio_size=(1, 512),
                                         sample_rate=512)
MICRO_SR = SRConfig.preset("demo_sr").with_(large_size=16, small_size=8, channel_mult=(1, 1))


def _trainer(what: str, seed: int = 0) -> Trainer:
    s = TrainSettings(what=what, preset="micro", batch=2, warmup=2, seed=seed)  # type: ignore
    return Trainer(s, unet_cfg=MICRO, sr_cfg=MICRO_SR)


def _same(a: Trainer, b: Trainer) -> None:
    assert a.step_count == b.step_count
    for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    for k in a.ema:
        assert torch.equal(a.ema[k], b.ema[k]), k


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    for what in ("base", "sr"):
        straight = _trainer(what)
        losses = [straight.step() for _ in range(4)]
        first = _trainer(what)
        first.step()
        first.step()
        first.save(tmp_path / f"{what}.pt")
        resumed = _trainer(what, seed=99)  # different init: everything must come from the file
        resumed.load(tmp_path / f"{what}.pt")
        assert [resumed.step(), resumed.step()] == losses[2:]
        _same(straight, resumed)


def test_checkpoint_of_other_network_is_refused(tmp_path: Path) -> None:
    base = _trainer("base")
    base.save(tmp_path / "b.pt")
    try:
        _trainer("sr").load(tmp_path / "b.pt")
    except ValueError as exc:
        assert "base" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_ema_weights_load_into_the_official_format(tmp_path: Path) -> None:
    from model import build_unet
    from model.checkpoint import load

    tr = _trainer("base")
    tr.step()
    load(build_unet(MICRO), {k: v.half() for k, v in tr.ema.items()})


def test_stop_request_saves_whole_steps(tmp_path: Path) -> None:
    from model.demo.train import train

    tr = _trainer("sr")
    calls = iter([False, False, True])
    train(tr.s, tmp_path / "s.pt", progress=False, trainer=tr, should_stop=lambda: next(calls))
    again = _trainer("sr", seed=5)
    again.load(tmp_path / "s.pt")
    assert again.step_count == 2
    _same(tr, again)

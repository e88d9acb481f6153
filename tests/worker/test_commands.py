"""`mmd demo-clip` and `mmd train-demo` through the `mmd` dispatcher (commands with their own
parser get the arguments after their name); the gateway's command set has neither."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from cli.main import main
from service.commands import COMMANDS as GATEWAY


def test_demo_clip_through_mmd(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    assert main(["demo-clip", str(out), "--seed", "2", "--seconds", "2"]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames in (0, 16)  # 2 s at 8 fps (0: not in the header)
        assert sum(1 for _ in c.decode(video=0)) == 16
    assert main(["demo-clip", str(tmp_path / "x.mp4"), "--seconds", "0"]) == 2


def test_train_demo_help_through_mmd(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train-demo", "--help"])
    assert exit_info.value.code == 0
    assert "mmd train-demo" in capsys.readouterr().out


def test_the_gateway_offers_neither() -> None:
    assert not {"demo-clip", "train-demo"} & set(GATEWAY)

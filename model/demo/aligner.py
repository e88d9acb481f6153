"""The demo world's prompt aligner: a small per-frame classifier of colour (video) and pitch
(audio); prompts are the colour names of :data:`model.demo.world.COLOUR_NAMES`.

Network (:class:`DemoAlignerNet`, ~14 k parameters): every frame ``[3, S, S]`` goes through
three 3x3 convolutions (stride 1, 2, 2) and a mean+max pool to 4 logits (red, green, blue,
"lit"); every frame's ``sample_rate / fps`` audio samples through three 1-D convolutions and a
mean+max pool to 4 logits (the three pitches, "sounding"). It is trained
(:mod:`model.demo.train_aligner`) on clean clips and on the demo base model's clean estimates
of noised clips at uniform timesteps, i.e. on what the sampler's guidance shows it.

Score of a prompt with colour ``k`` (:meth:`DemoAligner.score`)::

    score_b = sum_f p_lit[b,f] log p_video(k | frame f) + sum_f p_snd[b,f] log p_audio(k | f)

with ``p_lit``/``p_snd`` the network's own activity probabilities, detached: active frames are
pushed toward colour and pitch ``k``, and nothing pushes a dark, silent frame to light up (the
events' timing, hence synchrony, is left to the diffusion model).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from model.config import UNetConfig
from model.demo.world import COLOUR_NAMES

__all__ = ["DEFAULT_SCALE", "DemoAligner", "DemoAlignerNet", "load_demo_aligner"]

ALIGNER_FILE = "demo_aligner.pt"
# Chosen by measurement (docs/demo-model.md, "Prompt guidance"). Joint, fast preset, SR on,
# 32 jobs per prompt (`bench/quality.py --modes "" --prompts red,green,blue --prompt-scales
# 1.5,2,3 --prompt-samples 32`): share of events in the prompted colour red / green / blue and
# sync (unguided 0.938): 1.5 -> 0.729 / 0.750 / 0.895, sync 0.916-0.931; 2 -> 0.796 / 0.778 /
# 0.897, sync 0.897-0.936; 3 -> 0.769 / 0.732 / 0.857, sync 0.844-0.913 (more than 0.05 down).
# An earlier 16-job sweep without SR had 1.5 ahead (0.857-0.875); the larger run picked 2.
DEFAULT_SCALE = 2.0


class DemoAlignerNet(nn.Module):
    """``forward(video [B,F,3,H,W], audio [B,1,F*spf]) -> (video [B,F,4], audio [B,F,4])``
    logits per frame: three classes (colour / pitch, in world colour order) and activity."""

    def __init__(self, samples_per_frame: int, width: int = 24) -> None:
        super().__init__()
        self.spf = samples_per_frame
        w = width
        self.video = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.audio = nn.Sequential(
            nn.Conv1d(1, w, 16, stride=2, padding=7), nn.SiLU(),
            nn.Conv1d(w, w, 8, stride=2, padding=3), nn.SiLU(),
            nn.Conv1d(w, w, 8, stride=2, padding=3), nn.SiLU(),
        )
        self.video_head = nn.Linear(2 * w, 4)
        self.audio_head = nn.Linear(2 * w, 4)

    def forward(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        b, f = video.shape[:2]
        if audio.shape[-1] != f * self.spf:
            raise ValueError(f"audio has {audio.shape[-1]} samples; expected {f} frames x "
                             f"{self.spf} samples per frame")
        hv = self.video(video.reshape(b * f, *video.shape[2:])).flatten(2)
        hv = torch.cat([hv.mean(-1), hv.amax(-1)], dim=1)
        ha = self.audio(audio.reshape(b * f, 1, self.spf))
        ha = torch.cat([ha.mean(-1), ha.amax(-1)], dim=1)
        return self.video_head(hv).view(b, f, 4), self.audio_head(ha).view(b, f, 4)


class DemoAligner:
    """The :class:`model.aligners.Aligner` of the demo world (see module docstring)."""

    name = "demo"
    prompts: tuple[str, ...] = COLOUR_NAMES

    def __init__(self, net: DemoAlignerNet, default_scale: float = DEFAULT_SCALE) -> None:
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.default_scale = default_scale

    def check_prompt(self, prompt: str) -> str:
        key = prompt.strip().lower()
        if key not in self.prompts:
            raise ValueError(f"prompt {prompt!r} is not known to the demo aligner; it accepts "
                             f"one colour name: {', '.join(self.prompts)}")
        return key

    def log_probs(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(colour log-probs [B,F,3], lit prob [B,F], pitch log-probs [B,F,3], sounding prob
        [B,F])`` of ``video [B,F,3,H,W]``, waveform ``audio [B,1,L]`` (both in ``[-1, 1]``)."""
        lv, la = self.net(video.float(), audio.float())
        return (lv[..., :3].log_softmax(-1), lv[..., 3].sigmoid(),
                la[..., :3].log_softmax(-1), la[..., 3].sigmoid())

    def score(self, video: Tensor, audio: Tensor, prompt: str) -> Tensor:
        """``[B]`` activity-weighted log-probability of the prompt's colour and pitch."""
        k = self.prompts.index(self.check_prompt(prompt))
        cv, lit, pa, snd = self.log_probs(video, audio)
        return (lit.detach() * cv[..., k]).sum(1) + (snd.detach() * pa[..., k]).sum(1)


def load_demo_aligner(cfg: UNetConfig, *, weights: str | os.PathLike[str] | None = None,
                      device: str | torch.device = "cpu") -> DemoAligner:
    """The demo aligner for a base config of the demo world's geometry. ``weights``: a state
    dict file (default: the shipped ``model/demo/weights/demo_aligner.pt``, sha256-checked
    against MANIFEST.json)."""
    from model.demo.weights_io import WEIGHTS_DIR, verify

    if weights is None:
        paths = verify(WEIGHTS_DIR)
        if "aligner" not in paths:
            raise FileNotFoundError(f"{WEIGHTS_DIR} has no aligner entry in its manifest: train "
                                    "and export one with `mmd train-demo --what aligner`")
        weights = paths["aligner"]
    if not Path(weights).is_file():
        raise FileNotFoundError(f"demo aligner weights {weights} not found")
    frames = cfg.video_size[0]
    spf = cfg.audio_size[1] // frames
    if spf * frames != cfg.audio_size[1] or cfg.video_size[1] != 3 or cfg.audio_size[0] != 1:
        raise ValueError(f"the demo aligner needs RGB video and mono audio of whole frames; got "
                         f"video {cfg.video_size}, audio {cfg.audio_size}")
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    net = DemoAlignerNet(spf, width=int(sd["video_head.weight"].shape[1]) // 2)
    net.load_state_dict({k: v.float() for k, v in sd.items()})
    return DemoAligner(net.to(device))

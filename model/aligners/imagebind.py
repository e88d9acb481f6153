"""ImageBind as the prompt aligner of the official models (issue 17, item 2b).

The score of a clip is ``cos(text, video) + cos(text, audio)``: the cosine similarity of the
prompt's ImageBind text embedding with the clip's vision embedding plus that with its audio
embedding (each in [-1, 1], so the score is in [-2, 2]). Because the two terms are summed,
the gradient on the video comes from the video term only and that on the audio from the
audio term only; both modalities are pulled toward the same text with equal weight.

Preprocessing is ImageBind's own (``imagebind/data.py``), redone in torch so that it is
differentiable and needs neither torchvision nor torchaudio:

* video ``[B, F, 3, H, W]`` in [-1, 1]: the frames are split into ``video_clips`` equal
  segments and the first and last frame of each segment form one 2-frame clip (the vision
  trunk's 2 x 14 x 14 tubelets; ImageBind's loader takes 2 frames per clip the same way);
  ``(x + 1) / 2`` to [0, 1], short side scaled to 224 (bilinear, as its video loader), the
  centre 224 x 224 crop (ImageBind averages the left, centre and right crops: the same one
  for square frames), CLIP mean/std. The clip embeddings are averaged, as ImageBind does.
  The official 16-frame clip with 4 clips uses frames 0, 3, 4, 7, 8, 11, 12 and 15.
* audio ``[B, C, L]`` in [-1, 1]: channels averaged, resampled to 16 kHz (if the model's rate
  differs), cut into 2 s clips (one clip when the waveform is at most 2 s, as the official
  1.6 s is; else 3 clips spread evenly, ImageBind's ``clips_per_video=3``); per clip the mean
  is removed, the 128-bin Kaldi log-mel filterbank taken (``model/aligners/fbank.py``),
  zero-padded or cut to 204 frames and normalised with ImageBind's ``mean=-4.268,
  std=9.138``. The official 25,600 samples give 158 frames, padded to 204 exactly as
  ImageBind's loader pads a 1.6 s file.
* text: the package's CLIP BPE tokenizer; the embedding is computed once per prompt (no
  gradient) and cached.

Values outside [-1, 1] are not clipped (clipping would stop the gradient there).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.aligners.fbank import FbankSpec, kaldi_fbank, resample
from model.aligners.imagebind_pkg import (
    IMAGEBIND_HUGE,
    Tokenizer,
    build_imagebind,
    drop_unused_modalities,
)
from model.checkpoint import CheckpointError, load_state_dict_file, normalise_state_dict
from model.config import UNetConfig

VISION_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FRAMES_PER_CLIP = 2
DEFAULT_VIDEO_CLIPS = 4
AUDIO_RATE = 16000
AUDIO_CLIP_SECONDS = 2
AUDIO_CLIPS = 3
AUDIO_TARGET_FRAMES = 204
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138
MAX_PROMPT_CHARS = 300
MAX_PROMPT_TOKENS = 75  # 77 positions less the start and end tokens
TEXT_CACHE_SIZE = 64
# Unmeasured: no ImageBind weights were available where this was written. A starting point
# for the operator to calibrate (bench/quality.py with the weights on a GPU), not a tuned value.
DEFAULT_SCALE = 1.0
WEIGHTS_HINT = (
    "download imagebind_huge.pth yourself (docs/imagebind.md: it is never downloaded at run "
    "time) and set the model's aligner_weights in MMD_MODELS to its path"
)


def clip_frame_indices(frames: int, clips: int) -> list[list[int]]:
    """For each of ``min(clips, frames)`` equal segments of ``frames`` frames, its first and
    last frame index (the same index twice for a one-frame segment)."""
    clips = max(1, min(clips, frames))
    bounds = [round(i * frames / clips) for i in range(clips + 1)]
    return [[a, b - 1] for a, b in pairwise(bounds)]


def vision_inputs(video: Tensor, clips: int) -> Tensor:
    """``video [B, F, 3, H, W]`` in [-1, 1] -> ImageBind vision input
    ``[B, S, 3, 2, 224, 224]`` (module docstring)."""
    B, _, C, H, W = video.shape
    index = torch.tensor(clip_frame_indices(video.shape[1], clips), device=video.device)
    S = index.shape[0]
    x = video[:, index.flatten()].reshape(B * S * FRAMES_PER_CLIP, C, H, W)
    x = (x + 1.0) * 0.5
    if H <= W:
        size = (VISION_SIZE, int(W * VISION_SIZE / H))
    else:
        size = (int(H * VISION_SIZE / W), VISION_SIZE)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top = (size[0] - VISION_SIZE + 1) // 2
    left = (size[1] - VISION_SIZE + 1) // 2
    x = x[..., top:top + VISION_SIZE, left:left + VISION_SIZE]
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    x = x.reshape(B, S, FRAMES_PER_CLIP, C, VISION_SIZE, VISION_SIZE)
    return x.transpose(2, 3)


def audio_inputs(audio: Tensor, sample_rate: int) -> Tensor:
    """``audio [B, C, L]`` in [-1, 1] at ``sample_rate`` -> ImageBind audio input
    ``[B, S, 1, 128, 204]`` (module docstring)."""
    wave = resample(audio.mean(dim=1), sample_rate, AUDIO_RATE)
    clip = AUDIO_CLIP_SECONDS * AUDIO_RATE
    length = wave.shape[-1]
    if length <= clip:
        pieces = [wave]
    else:
        starts = torch.linspace(0, length - clip, AUDIO_CLIPS).round().long().tolist()
        pieces = [wave[:, s:s + clip] for s in starts]
    out = []
    for piece in pieces:
        fbank = kaldi_fbank(piece - piece.mean(dim=-1, keepdim=True), FbankSpec())
        fbank = fbank.transpose(1, 2)  # [B, 128, frames]
        pad = AUDIO_TARGET_FRAMES - fbank.shape[-1]
        fbank = F.pad(fbank, (0, pad)) if pad > 0 else fbank[..., :AUDIO_TARGET_FRAMES]
        out.append((fbank - AUDIO_MEAN) / AUDIO_STD)
    return torch.stack(out, dim=1).unsqueeze(2)


class ImageBindAligner:
    """The :class:`~model.aligners.base.Aligner` over an ImageBind model (module docstring).

    :param model: the package's ``ImageBindModel`` with vision, text and audio branches; put in
        eval mode with its parameters frozen (gradients flow to the inputs only).
    :param tokenizer: the package's tokenizer (:class:`~model.aligners.imagebind_pkg.Tokenizer`).
    :param sample_rate: the base model's audio rate (``UNetConfig.sample_rate``).
    :param video_clips: 2-frame clips sampled across the video (cost: one vision forward and
        backward each).
    """

    name = "imagebind"

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, sample_rate: int,
                 video_clips: int = DEFAULT_VIDEO_CLIPS,
                 default_scale: float = DEFAULT_SCALE) -> None:
        if video_clips < 1:
            raise ValueError(f"video_clips must be at least 1; got {video_clips}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.video_clips = video_clips
        self.default_scale = default_scale
        self._texts: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())

    def check_prompt(self, prompt: str) -> str:
        text = prompt.strip() if isinstance(prompt, str) else ""
        if not text:
            raise ValueError("the imagebind aligner needs a non-empty text prompt, such as "
                             "'waves crashing on a beach'")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(text)} characters; the imagebind aligner takes at "
                             f"most {MAX_PROMPT_CHARS}")
        tokens = self.tokenizer.count(text)
        if tokens > MAX_PROMPT_TOKENS:
            raise ValueError(f"prompt is {tokens} tokens; ImageBind reads at most "
                             f"{MAX_PROMPT_TOKENS}: shorten it")
        return text

    def text_embedding(self, prompt: str) -> Tensor:
        """``[D]`` unit-norm text embedding of a checked prompt (cached, no gradient)."""
        if prompt in self._texts:
            self._texts.move_to_end(prompt)
            return self._texts[prompt]
        with torch.no_grad():
            ids = self.tokenizer(prompt).to(self._param.device)
            emb = self.model({"text": ids})["text"][0].float()
        emb = F.normalize(emb, dim=-1)
        self._texts[prompt] = emb
        while len(self._texts) > TEXT_CACHE_SIZE:
            self._texts.popitem(last=False)
        return emb

    def embed_video(self, video: Tensor) -> Tensor:
        """``video [B, F, 3, H, W]`` -> ``[B, D]`` unit-norm vision embedding."""
        x = vision_inputs(video.to(self._param.dtype), self.video_clips)
        return F.normalize(self.model({"vision": x})["vision"].float(), dim=-1)

    def embed_audio(self, audio: Tensor) -> Tensor:
        """``audio [B, C, L]`` -> ``[B, D]`` unit-norm audio embedding."""
        x = audio_inputs(audio.float(), self.sample_rate).to(self._param.dtype)
        return F.normalize(self.model({"audio": x})["audio"].float(), dim=-1)

    def score(self, video: Tensor, audio: Tensor, prompt: str) -> Tensor:
        if video.ndim != 5 or video.shape[2] != 3 or audio.ndim != 3 or \
                video.shape[0] != audio.shape[0]:
            raise ValueError(f"need video [B, F, 3, H, W] and audio [B, C, L] of one batch; "
                             f"got {tuple(video.shape)} and {tuple(audio.shape)}")
        text = self.text_embedding(prompt)
        return self.embed_video(video) @ text + self.embed_audio(audio) @ text


def read_state_dict(weights: str | os.PathLike[str] | None) -> dict[str, Tensor]:
    """The tensors of an ImageBind checkpoint (``model.checkpoint``'s reader: CPU, tensors
    only, a ``{"model": ...}``-style wrapper or ``module.`` prefix removed); ValueError /
    FileNotFoundError saying what to do when the path is unset, absent or not a state dict."""
    if weights is None or str(weights) == "":
        raise ValueError(f"the imagebind aligner needs its weights: {WEIGHTS_HINT}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"imagebind weights {str(path)!r} not found: {WEIGHTS_HINT}")
    try:
        state, _, _ = normalise_state_dict(load_state_dict_file(path))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {WEIGHTS_HINT}") from exc
    return state


def load_imagebind_aligner(cfg: UNetConfig, *, weights: str | os.PathLike[str] | None = None,
                           device: str | torch.device = "cpu",
                           arch: Mapping[str, Any] = IMAGEBIND_HUGE,
                           video_clips: int = DEFAULT_VIDEO_CLIPS) -> ImageBindAligner:
    """The ImageBind aligner for base model ``cfg``, weights from ``weights`` (required; never
    downloaded), in eval mode on ``device``. ``arch``: ``ImageBindModel`` arguments (default
    the released ``imagebind_huge``; tests pass a tiny one). ValueError / FileNotFoundError
    for missing or mismatched weights, ImportError when the package is not installed."""
    state = read_state_dict(weights)
    with torch.device(device):
        model = build_imagebind(arch)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{str(weights)!r} does not fit the ImageBind architecture {dict(arch)} "
                         f"({str(exc)[:400]}); is it imagebind_huge.pth?") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{str(weights)!r} does not fit the ImageBind architecture: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:3]}, "
            f"{len(result.unexpected_keys)} unexpected {result.unexpected_keys[:3]}; "
            "is it imagebind_huge.pth?")
    drop_unused_modalities(model)
    return ImageBindAligner(model, Tokenizer(), sample_rate=cfg.sample_rate,
                            video_clips=video_clips)

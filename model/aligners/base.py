"""The aligner interface (see :mod:`model.aligners`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Aligner(Protocol):
    """A differentiable prompt scorer for clips of one base model's geometry.

    ``name``: the kind (``"demo"``, ``"imagebind"``). ``default_scale``: the guidance scale a
    request gets when it names none (measured per aligner, documented where it is set).
    """

    name: str
    default_scale: float

    def check_prompt(self, prompt: str) -> str:
        """Return the prompt as the aligner uses it (e.g. stripped, lower-cased), or raise
        ValueError with a message that says what prompts this aligner accepts."""
        ...

    def score(self, video: Tensor, audio: Tensor, prompt: str) -> Tensor:
        """Similarity of each clip to ``prompt``, higher = closer.

        :param video: ``[B, F, 3, H, W]`` clean-estimate frames in ``[-1, 1]`` at the base
            model's frame size and ``UNetConfig.fps``.
        :param audio: ``[B, 1, L]`` clean-estimate waveform in ``[-1, 1]`` (the network's
            ``audio_scale`` already divided out) at ``UNetConfig.sample_rate``.
        :param prompt: a prompt that passed :meth:`check_prompt`.
        :returns: ``[B]`` float32 scores, differentiable w.r.t. ``video`` and ``audio``; each
            clip's score depends on that clip only (so batching does not change gradients).
        """
        ...

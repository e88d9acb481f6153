"""Samplers for MM-Diffusion: DPM-Solver(++), DDIM, DDPM and zero-shot conditional generation.

Public entry points (stateless; randomness only through ``generator`` or ``noise_fn``):

* :func:`sample_joint` -- unconditional joint audio-video sampling, ``eps_fn(video, audio, t)``.
* :func:`sample_sr` -- single-modal super-resolution, ``eps_fn(x, t, low_res=...) -> [N,6,H,W]``.
* :func:`sample_conditional` -- video-to-audio / audio-to-video (official 1000-step DDPM loop,
  or our fast DDIM / DPM-Solver conditional samplers).

Network evaluations: wrap the network with :func:`count_nfe` and pass the wrapper; its
``.forward`` / ``.backward`` attributes count calls (``backward`` = calls made with autograd
active, i.e. the gradient-guided conditional samplers).
"""

from model.samplers.api import sample_conditional, sample_joint, sample_sr, shared_clip_noise
from model.samplers.common import NFECounter, SamplingCancelled, count_nfe
from model.samplers.spec import SamplerSpec

__all__ = [
    "NFECounter",
    "SamplerSpec",
    "SamplingCancelled",
    "count_nfe",
    "sample_conditional",
    "sample_joint",
    "sample_sr",
    "shared_clip_noise",
]

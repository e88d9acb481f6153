"""Kaldi-style log-mel filterbank and band-limited resampling in plain torch, differentiable.

ImageBind's audio encoder was trained on ``torchaudio.compliance.kaldi.fbank(waveform,
htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
num_mel_bins=128, dither=0.0, frame_length=25, frame_shift=10)``; :func:`kaldi_fbank`
computes the same features (Kaldi's ``compute-fbank-feats`` recipe) without torchaudio, so
gradients flow from the features back to the waveform:

1. frames of ``window`` samples every ``shift`` samples, only whole frames (snip edges):
   ``1 + (L - window) // shift`` of them;
2. per frame: subtract its mean (DC offset), pre-emphasis ``x[n] - 0.97 x[n-1]`` (with
   ``x[-1] = x[0]``), the symmetric Hann window ``0.5 - 0.5 cos(2 pi n / (window - 1))``,
   zero padding to the next power of two;
3. power spectrum ``|rfft|^2``;
4. triangular filters, equally spaced on the mel scale ``1127 ln(1 + f / 700)`` between
   ``low_freq`` (20 Hz) and the Nyquist frequency, each rising from its left neighbour's
   centre to its own and falling to its right neighbour's (in mel); the Nyquist bin gets
   weight 0;
5. ``log(max(energy, float32 eps))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# torchaudio's floor under the mel energies before the log (torch.finfo(torch.float).eps)
LOG_FLOOR = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class FbankSpec:
    """Parameters of :func:`kaldi_fbank` (defaults: ImageBind's audio features)."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    low_freq: float = 20.0
    # <= 0: relative to the Nyquist frequency (Kaldi's convention); 0 = Nyquist
    high_freq: float = 0.0

    @property
    def window(self) -> int:
        """Samples per frame (400 at 16 kHz, 25 ms)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz, 10 ms)."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def fft_size(self) -> int:
        """The window rounded up to a power of two (512)."""
        return 1 << (self.window - 1).bit_length()

    def num_frames(self, length: int) -> int:
        """Frames of a waveform of ``length`` samples (0 when shorter than one window)."""
        return 0 if length < self.window else 1 + (length - self.window) // self.shift


def mel_scale(freq: Tensor | float) -> Tensor:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def inverse_mel_scale(mel: Tensor) -> Tensor:
    """Hz of mel value(s) ``mel`` (inverse of :func:`mel_scale`)."""
    return 700.0 * (torch.exp(mel.to(torch.float64) / 1127.0) - 1.0)


def mel_filters(spec: FbankSpec) -> tuple[Tensor, Tensor]:
    """``(weights [num_mel_bins, fft_size // 2 + 1] float64, centres [num_mel_bins] Hz)``:
    the triangular filters over the power-spectrum bins and each filter's centre frequency."""
    nyquist = 0.5 * spec.sample_rate
    high = spec.high_freq if spec.high_freq > 0 else nyquist + spec.high_freq
    if not 0.0 <= spec.low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist}; got {spec.low_freq}, "
                         f"{high}")
    mel_low, mel_high = mel_scale(spec.low_freq), mel_scale(high)
    delta = (mel_high - mel_low) / (spec.num_mel_bins + 1)
    index = torch.arange(spec.num_mel_bins, dtype=torch.float64).unsqueeze(1)
    left, centre, right = (mel_low + (index + k) * delta for k in (0, 1, 2))
    n_fft_bins = spec.fft_size // 2
    mel = mel_scale(torch.arange(n_fft_bins, dtype=torch.float64)
                    * (spec.sample_rate / spec.fft_size)).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    weights = torch.nn.functional.pad(weights, (0, 1))  # the Nyquist bin: weight 0
    return weights, inverse_mel_scale(centre.squeeze(1))


def kaldi_fbank(wave: Tensor, spec: FbankSpec = FbankSpec()) -> Tensor:
    """Log-mel filterbank of each waveform, as the module docstring says.

    :param wave: ``[B, L]`` float waveforms at ``spec.sample_rate`` (ImageBind: in [-1, 1]).
    :returns: ``[B, frames, num_mel_bins]`` in ``wave``'s dtype, differentiable w.r.t. ``wave``;
        ``frames = spec.num_frames(L)``.
    """
    if wave.ndim != 2:
        raise ValueError(f"wave must be [B, L]; got shape {tuple(wave.shape)}")
    n = spec.num_frames(wave.shape[1])
    if n == 0:
        raise ValueError(f"waveform of {wave.shape[1]} samples is shorter than one "
                         f"{spec.window}-sample frame")
    frames = wave.unfold(1, spec.window, spec.shift)  # [B, n, window]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - spec.preemphasis * previous
    window = torch.hann_window(spec.window, periodic=False, dtype=wave.dtype,
                               device=wave.device)
    frames = torch.nn.functional.pad(frames * window, (0, spec.fft_size - spec.window))
    spectrum = torch.fft.rfft(frames, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()  # [B, n, fft_size // 2 + 1]
    weights, _ = mel_filters(spec)
    energies = power @ weights.to(dtype=wave.dtype, device=wave.device).T
    return torch.clamp(energies, min=LOG_FLOOR).log()


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Band-limited resampling of ``wave [..., L]`` to ``round(L * new_rate / orig_rate)``
    samples by truncating or zero-padding its spectrum (exact for a periodic band-limited
    signal; differentiable). The same tensor when the rates are equal."""
    if orig_rate == new_rate:
        return wave
    if orig_rate < 1 or new_rate < 1:
        raise ValueError(f"sample rates must be positive; got {orig_rate}, {new_rate}")
    length = wave.shape[-1]
    new_length = max(1, round(length * new_rate / orig_rate))
    spectrum = torch.fft.rfft(wave, dim=-1)
    keep = min(spectrum.shape[-1], new_length // 2 + 1)
    out = torch.fft.irfft(spectrum[..., :keep], n=new_length, dim=-1)
    return out * (new_length / length)


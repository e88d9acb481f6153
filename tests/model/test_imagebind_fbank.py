"""The torch Kaldi filterbank and resampler of the ImageBind aligner (model/aligners/fbank.py),
against an independent numpy implementation of Kaldi's recipe and known properties of tones.
No ImageBind package needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.aligners.fbank import FbankSpec, kaldi_fbank, mel_filters, resample

EPS32 = float(np.finfo(np.float32).eps)


def np_mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def np_fbank(x: np.ndarray, sr: int = 16000, n_mel: int = 128) -> np.ndarray:
    """Kaldi's compute-fbank-feats (snip edges, DC removal, pre-emphasis 0.97, symmetric Hann,
    512-point power spectrum, mel triangles from 20 Hz to Nyquist, log with eps floor), written
    loop by loop from the recipe: [frames, n_mel]."""
    win, hop, nfft = sr * 25 // 1000, sr * 10 // 1000, 512
    lo, hi = np_mel(20.0), np_mel(sr / 2)
    delta = (hi - lo) / (n_mel + 1)
    weights = np.zeros((n_mel, nfft // 2 + 1))
    for m in range(n_mel):
        left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        for k in range(nfft // 2):  # Kaldi leaves the Nyquist bin out
            f = np_mel(k * sr / nfft)
            if left < f <= centre:
                weights[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                weights[m, k] = (right - f) / (right - centre)
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / (win - 1)) for i in range(win)])
    rows = []
    for t in range(1 + (len(x) - win) // hop):
        frame = x[t * hop:t * hop + win].astype(np.float64)
        frame = frame - frame.mean()
        emph = np.empty_like(frame)
        emph[0] = frame[0] - 0.97 * frame[0]
        emph[1:] = frame[1:] - 0.97 * frame[:-1]
        power = np.abs(np.fft.rfft(emph * hann, nfft)) ** 2
        rows.append(np.log(np.maximum(weights @ power, EPS32)))
    return np.stack(rows)


def test_imagebind_numbers() -> None:
    spec = FbankSpec()
    assert (spec.window, spec.shift, spec.fft_size) == (400, 160, 512)
    # the official 1.6 s at 16 kHz: 158 frames (padded to 204 by the aligner)
    assert spec.num_frames(25600) == 158
    assert spec.num_frames(399) == 0


def test_matches_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    wave = torch.rand(2, 1200, generator=gen, dtype=torch.float64) * 2 - 1
    ours = kaldi_fbank(wave)
    assert ours.shape == (2, 6, 128)
    for b in range(2):
        ref = np_fbank(wave[b].numpy())
        np.testing.assert_allclose(ours[b].numpy(), ref, rtol=0, atol=1e-9)
    # float32 (what the aligner runs) agrees to float32 precision of log energies
    ours32 = kaldi_fbank(wave.float())
    np.testing.assert_allclose(ours32.numpy(), ours.numpy(), rtol=0, atol=2e-3)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 6500.0])
def test_tone_peaks_in_its_mel_bin(freq: float) -> None:
    sr = 16000
    t = torch.arange(25600, dtype=torch.float64) / sr
    wave = (0.5 * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)
    peak = int(kaldi_fbank(wave)[0].mean(dim=0).argmax())
    # the bin whose centre (in mel, as Kaldi spaces them) is nearest the tone
    lo, hi = np_mel(20.0), np_mel(sr / 2)
    centres = [lo + (m + 1) * (hi - lo) / 129 for m in range(128)]
    expected = int(np.argmin([abs(c - np_mel(freq)) for c in centres]))
    assert abs(peak - expected) <= 1, (peak, expected)
    _, hz = mel_filters(FbankSpec())
    assert abs(float(hz[peak]) - freq) < 0.05 * freq + 40


def test_gradient_reaches_every_sample_used() -> None:
    wave = (torch.rand(1, 720, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda w: kaldi_fbank(w)[..., 10:20], (wave,))
    kaldi_fbank(wave).sum().backward()
    assert wave.grad is not None and bool(torch.isfinite(wave.grad).all())
    # 3 frames of 400 every 160 cover samples 0..719
    assert bool((wave.grad[0] != 0).all())


def test_short_or_misshapen_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than one"):
        kaldi_fbank(torch.zeros(1, 300))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        kaldi_fbank(torch.zeros(300))


def test_resample_band_limited_tone_exactly() -> None:
    # 440 Hz over exactly 22 periods (0.05 s): periodic, far below both Nyquists
    def tone(rate: int) -> torch.Tensor:
        t = torch.arange(rate // 20, dtype=torch.float64) / rate
        return torch.sin(2 * math.pi * 440.0 * t).reshape(1, 1, -1)

    up = resample(tone(8000), 8000, 16000)
    assert up.shape == (1, 1, 800)
    torch.testing.assert_close(up, tone(16000), rtol=0, atol=1e-9)
    down = resample(tone(24000), 24000, 16000)
    torch.testing.assert_close(down, tone(16000), rtol=0, atol=1e-9)
    same = tone(16000)
    assert resample(same, 16000, 16000) is same

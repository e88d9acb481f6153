"""`mmd generate` in-process (cli.main.main) and once as a subprocess; MP4s decoded back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cli.main import main
from tests.conftest import REPO_ROOT
from worker.generate_cli import output_paths
from worker.media import AAC_FRAME_SAMPLES, decode_audio, decode_video_clip, mux_mp4

FAST = ["--steps", "1", "--order", "1", "--sr-steps", "2"]  # 1 U-Net pass, 2 SR passes
# tiny makes 2048 samples at 16 kHz (0.128 s) under 8 frames at 10 fps: the MP4's audio lasts
# as long as its video (0.8 s at 16 kHz), silence after the model's audio (worker.muxing)
TINY_MP4_SAMPLES = 8 * 16000 // 10


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> tuple[Path, Path]:
    """The golden tiny state dicts as plain .pt checkpoints (what a user would pass)."""
    folder = tmp_path_factory.mktemp("weights")
    out = []
    for name in ("unet_tiny", "sr_tiny"):
        sd = torch.load(golden_dir / f"{name}.pt", map_location="cpu",
                        weights_only=False)["state_dict"]
        torch.save(sd, folder / f"{name}.pt")
        out.append(folder / f"{name}.pt")
    return out[0], out[1]


def _read(path: Path) -> tuple[list[np.ndarray], float, int, int]:
    """Frames, fps, audio sample rate and decoded audio sample count of an MP4."""
    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
        rate = c.streams.audio[0].codec_context.sample_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    return frames, fps, rate, samples


def test_output_paths() -> None:
    assert output_paths(Path("a/b.mp4"), 1) == [Path("a/b.mp4")]
    assert output_paths(Path("a/b.mp4"), 2) == [Path("a/b-0.mp4"), Path("a/b-1.mp4")]


def test_joint_with_sr_writes_a_playable_mp4(weights: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    unet, sr = weights
    out = tmp_path / "joint.mp4"
    rc = main(["generate", "--checkpoint", str(unet), "--sr-checkpoint", str(sr), "--preset",
               "tiny", "--seed", "1", *FAST, "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "RANDOM" not in err and "base" in err and "sr" in err  # tqdm bars on stderr
    frames, fps, rate, samples = _read(out)
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    assert (fps, rate) == (10.0, 16000)
    assert abs(samples - TINY_MP4_SAMPLES) < AAC_FRAME_SAMPLES


def test_video_to_audio_from_a_real_clip(weights: tuple[Path, Path], tmp_path: Path,
                                         shared_media: Path) -> None:
    unet, _ = weights
    out = tmp_path / "v2a.mp4"
    clip = shared_media / "landscape.mp4"
    rc = main(["generate", "--checkpoint", str(unet), "--preset", "tiny", "--no-sr", "--mode",
               "video-to-audio", "--input", str(clip), "--start-s", "12.5", *FAST,
               "--out", str(out)])
    assert rc == 0
    expected = decode_video_clip(clip, start_s=12.5, num_frames=8, fps=10, size=16)
    frames, fps, _, samples = _read(out)
    assert len(frames) == 8 and fps == 10.0
    assert abs(samples - TINY_MP4_SAMPLES) < AAC_FRAME_SAMPLES
    # The output keeps the input frames (through H.264 at 16x16: small coding error only).
    assert np.abs(np.stack(frames).astype(int) - expected).mean() < 6


def test_audio_to_video_from_a_wav(weights: tuple[Path, Path], tmp_path: Path) -> None:
    unet, _ = weights
    wav = tmp_path / "tone.wav"
    rate = 44100
    tone = (0.4 * np.sin(2 * np.pi * 660 * np.arange(rate) / rate) * 32767).astype(np.int16)
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    out = tmp_path / "a2v.mp4"
    rc = main(["generate", "--checkpoint", str(unet), "--preset", "tiny", "--no-sr", "--mode",
               "audio-to-video", "--input", str(wav), "--num-samples", "2", *FAST,
               "--out", str(out)])
    assert rc == 0
    for path in output_paths(out, 2):
        frames, _, _, _ = _read(path)
        assert len(frames) == 8 and frames[0].shape == (16, 16, 3)
        back = decode_audio(path, num_samples=2048)
        expected = decode_audio(wav, num_samples=2048)
        assert np.corrcoef(back[300:1800], expected[300:1800])[0, 1] > 0.95  # the input audio


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--mode", "video-to-audio", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "needs --input" in capsys.readouterr().err
    wav = tmp_path / "silence.mp4"
    mux_mp4(wav, np.zeros((2, 8, 8, 3), np.uint8), np.zeros(1600, np.float32))
    assert main(["generate", "--input", str(wav), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "only used with" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    rc = main(["generate", "--no-sr", "--mode", "audio-to-video", "--input", str(text),
               "--out", str(tmp_path / "x.mp4")])
    assert rc == 2 and "[unsupported_container]" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_subprocess_random_weights(tmp_path: Path) -> None:
    out = tmp_path / "noise.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "generate", "--preset", "tiny", "--no-sr", "--seed", "3",
         "--num-samples", "2", *FAST, "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM weights" in proc.stderr and "noise" in proc.stderr
    written = [Path(line) for line in proc.stdout.split()]
    assert written == output_paths(out, 2)
    for path in written:
        frames, fps, _, samples = _read(path)
        assert len(frames) == 8 and frames[0].shape == (16, 16, 3) and fps == 10.0
        assert abs(samples - TINY_MP4_SAMPLES) < AAC_FRAME_SAMPLES
    # Same seed in another process (random init is seeded too): byte-identical files.
    again = tmp_path / "again.mp4"
    assert main(["generate", "--preset", "tiny", "--no-sr", "--seed", "3", "--num-samples", "2",
                 *FAST, "--out", str(again)]) == 0
    for first, second in zip(written, output_paths(again, 2), strict=False):
        assert first.read_bytes() == second.read_bytes()
    assert written[0].read_bytes() != written[1].read_bytes()


def test_duration_s_covers_the_span_with_the_inputs_own_picture(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    """``--duration-s 2.5`` of a 3 s 48x48 clip from 0.3 s: 25 frames of the clip's own picture
    (48x48, not the model's 16x16) with 2.5 s of generated sound; 4 tiny windows."""
    from tests.helpers.media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=3.0, size=48)
    out = tmp_path / "long.mp4"
    rc = main(["generate", "--preset", "tiny", "--no-sr", "--mode", "video-to-audio",
               "--input", str(clip), "--start-s", "0.3", "--duration-s", "2.5",
               "--sampler", "ddim", "--steps", "2",
               "--guidance", "replacement", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "4 windows" in capsys.readouterr().err
    frames, fps, rate, samples = _read(out)
    assert len(frames) == 25 and fps == 10.0 and frames[0].shape == (48, 48, 3)
    assert abs(samples / rate - 2.5) <= 0.1  # within one video frame
    expected = decode_video_clip(clip, start_s=0.3, num_frames=25, fps=10, size=48)
    assert np.abs(np.stack(frames).astype(int) - expected.astype(int)).mean() < 12
    assert main(["generate", "--duration-s", "2", "--out", str(tmp_path / "x.mp4")]) == 2


def test_prompt_arguments_are_checked_before_loading(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.mp4")
    cases = [
        (["--preset", "tiny", "--prompt", "red"], "pass --aligner imagebind"),
        (["--prompt", "purple"], "red, green, blue"),
        (["--prompt", " "], "--prompt: prompt is empty"),
        (["--prompt-scale", "3"], "--prompt-scale: prompt_scale is only used with a prompt"),
        (["--prompt", "red", "--prompt-scale", "-1"], "--prompt-scale"),
        (["--preset", "tiny", "--aligner", "imagebind", "--prompt", "a dog"], "aligner_weights"),
        (["--mode", "audio-to-video", "--input", out, "--duration-s", "2", "--prompt", "red",
          "--official"], "--duration-s: a prompt with duration_s needs a fast sampler"),
        (["--mode", "audio-to-video", "--input", out, "--duration-s", "2", "--prompt", "red",
          "--sampler", "ddpm", "--steps", "10"], "needs a fast sampler"),
    ]
    for flags, says in cases:
        assert main(["generate", *flags, "--out", out]) == 2, flags
        assert says in capsys.readouterr().err, flags
    assert not Path(out).exists()


def test_prompt_on_the_demo_model_counts_backward_passes(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """The shipped demo model and its aligner: ``--prompt red`` runs (2 DDIM steps, no SR), the
    summary names the prompt and the scale it ran with and counts a backward pass per forward
    one; the MP4 decodes to the demo's 8 frames."""
    out = tmp_path / "red.mp4"
    rc = main(["generate", "--prompt", " Red", "--no-sr", "--sampler", "ddim", "--steps", "2",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "prompt 'red' scale" in err and "'base_backward': 2" in err, err
    frames, fps, _, _ = _read(out)
    assert len(frames) == 8 and fps == 8.0

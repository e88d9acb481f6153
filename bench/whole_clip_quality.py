"""Issue 12 item 4, measurable on any whole-clip result MP4: audio-visual synchrony over the
whole clip vs within single windows, and the audio envelope's smoothness across window joints.

    python3 bench/whole_clip_quality.py result.mp4 --preset landscape   # a served result
    python3 bench/whole_clip_quality.py result.mp4 --preset tiny --json

The window plan is rebuilt from the result's length and the preset's window (``core.windows``,
the worker's default overlap), so the joints are where the worker put them.

* ``sync``: a model-free synchrony proxy at the model's 10 fps: the Pearson correlation of the
  video's motion energy (mean |difference| of consecutive grey frames, the frames nearest to
  each 1/10 s) with the audio's onset strength (positive change of the log RMS envelope over
  the same 1/10 s steps); ``lag`` = the shift in frames (|lag| <= 5) with the highest
  correlation (0 = in sync; negative = the sound comes late). Given for the whole clip and as
  the mean over the plan's windows, each on its own frames: "synchrony over the whole clip is
  as good as within one window" means the first is not below the second (by more than the
  windows' spread, also printed).
* ``seam``: ``bench/windows.py``'s figure on the result's audio: mean |jump| of the audio
  envelope (dB, blocks of 1/16 window) at the joints / inside windows (1 = as smooth across a
  joint as inside); ``joint dB`` = level at the joints minus inside.

With random weights these figures judge the machinery only; meaningful values need the trained
demo model (issue 12 depends on it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.windows import seam
from core.windows import default_overlap, window_geometry
from model.windows import WindowPlan, plan_windows

RATE = 16000  # every result's soundtrack
FPS = 10  # the official models' frame rate (measure() takes the preset's)
MAX_LAG = 5


def read_result(path: Path, fps: int = FPS) -> tuple[np.ndarray, np.ndarray]:
    """``(grey float32 [F] frames at ``fps`` (nearest source frame), audio float32 [T] at
    16 kHz)`` of an MP4."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        rate = float(vs.average_rate or fps)
        frames = [(float(f.time or 0.0), f.to_ndarray(format="gray").astype(np.float32))
                  for f in c.decode(vs)]
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks = [r.to_ndarray().reshape(-1) for f in c.decode(audio=0) for r in rs.resample(f)]
        chunks += [r.to_ndarray().reshape(-1) for r in rs.resample(None)]
    audio = np.concatenate(chunks).astype(np.float32)
    t0 = frames[0][0]
    times = np.array([t - t0 for t, _ in frames])
    n = max(1, round(len(frames) / rate * fps))  # the clip's length in model frames
    picked = [frames[int(np.argmin(np.abs(times - k / fps)))][1] for k in range(n)]
    return np.stack(picked), audio


def motion(video: np.ndarray) -> np.ndarray:
    """Mean |difference| of consecutive frames: ``[F - 1]`` (between frame k and k+1)."""
    return np.abs(np.diff(video, axis=0)).mean(axis=(1, 2))


def onsets(audio: np.ndarray, frames: int, fps: int = FPS) -> np.ndarray:
    """Positive change of the log RMS level per frame (1 / ``fps`` s): ``[frames - 1]``."""
    hop = RATE // fps
    blocks = audio[: frames * hop].reshape(-1, hop) if audio.size >= frames * hop else \
        np.pad(audio, (0, frames * hop - audio.size)).reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((blocks ** 2).mean(axis=1)) + 1e-4)
    return np.maximum(np.diff(level), 0.0)


def sync(m: np.ndarray, o: np.ndarray) -> tuple[float, int]:
    """(correlation at lag 0, the lag in frames of the highest correlation)."""
    def corr(lag: int) -> float:
        a, b = (m[lag:], o[: len(o) - lag]) if lag >= 0 else (m[:lag], o[-lag:])
        if len(a) < 3 or a.std() == 0 or b.std() == 0:
            return 0.0
        return float(np.corrcoef(a, b)[0, 1])

    lags = range(-MAX_LAG, MAX_LAG + 1)
    return corr(0), max(lags, key=corr)


def preset_fps(preset: str) -> int:
    geometry = window_geometry(preset)
    if geometry is None:
        raise SystemExit(f"unknown preset {preset!r}; add its window to core/windows.py")
    return geometry.fps


def plan_for(frames: int, preset: str) -> WindowPlan:
    geometry = window_geometry(preset)
    if geometry is None:
        raise SystemExit(f"unknown preset {preset!r}; add its window to core/windows.py")
    wf, fps = geometry.frames, geometry.fps
    return plan_windows(frames / fps, window_frames=wf, window_samples=wf * RATE // fps,
                        overlap_frames=default_overlap(wf), fps=fps, sample_rate=RATE)


def measure(path: Path, preset: str) -> dict[str, float]:
    fps = preset_fps(preset)
    video, audio = read_result(path, fps)
    frames = video.shape[0]
    plan = plan_for(frames, preset)
    m, o = motion(video), onsets(audio, frames, fps)
    whole, whole_lag = sync(m, o)
    per = [sync(m[w.frame_start:w.frame_end - 1], o[w.frame_start:w.frame_end - 1])
           for w in plan.windows]
    corrs = [c for c, _ in per]
    ratio, joint, inside, joint_db = seam(
        plan, torch.from_numpy(audio[: plan.samples]).reshape(1, -1), "audio")
    return {"frames": frames, "windows": plan.count, "sync_whole": whole,
            "lag_whole": whole_lag, "sync_windows": statistics.fmean(corrs),
            "sync_windows_sd": statistics.pstdev(corrs) if len(corrs) > 1 else 0.0,
            "lag_windows": statistics.fmean(abs(lag) for _, lag in per),
            "seam": ratio, "seam_joint_db": joint_db, "jump_joint": joint, "jump_inside": inside}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("result", type=Path, help="a whole-clip result MP4")
    ap.add_argument("--preset", default="landscape", help="the model's U-Net preset")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = measure(args.result, args.preset)
    if args.json:
        print(json.dumps(r))
        return
    print(f"{args.result.name}: {r['frames']} frames, {r['windows']} windows")
    print(f"sync whole clip {r['sync_whole']:.3f} (best lag {r['lag_whole']:+d}); within a window "
          f"{r['sync_windows']:.3f} +- {r['sync_windows_sd']:.3f} (mean |lag| "
          f"{r['lag_windows']:.2f})")
    print(f"seam {r['seam']:.3f} (joint jump {r['jump_joint']:.3f} dB / inside "
          f"{r['jump_inside']:.3f} dB), joint level {r['seam_joint_db']:+.2f} dB")


if __name__ == "__main__":
    main()

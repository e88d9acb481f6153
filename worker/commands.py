"""The worker's commands (``mmd COMMAND``; torch is imported only by the one that runs)."""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("worker.generate_cli", "run the generation pipeline locally and write an MP4"),
    "worker": ("worker.main", "run an RQ GPU/CPU worker that loads the models once"),
    "fetch-weights": ("worker.fetch_weights", "download checkpoints from S3 and verify sha256"),
    "demo-clip": ("worker.demo_clip", "write a clip of the demo world (picture + its true "
                  "soundtrack) as an MP4"),
    "train-demo": ("model.demo.train_cli", "train (or resume) the demo models on the demo world, "
                   "or export their weights"),
}

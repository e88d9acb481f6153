"""The demo model: a synthetic audio-visual world, its trainer, quality metrics and the shipped
weights.

* :mod:`model.demo.world` -- coloured squares flash, each flash sounds the tone of its colour;
* :mod:`model.demo.train` / :mod:`model.demo.train_cli` (``mmd train-demo``) -- trains the
  ``demo`` base U-Net (8 frames of 16 x 16 at 8 fps, audio 2048 samples at 2048 Hz, 0.68 M
  parameters) and the ``demo_sr`` SR U-Net (16 -> 32, 0.94 M parameters), v-prediction;
* :mod:`model.demo.quality` -- synchrony and colour-pitch agreement; :mod:`model.demo.scoring`
  runs the pipeline in one mode and scores it (``bench/quality.py``);
* :mod:`model.demo.weights_io` -- ``weights/`` (fp16 EMA weights, sha256 in MANIFEST.json) and
  :func:`~model.demo.weights_io.load_demo_models`.
"""

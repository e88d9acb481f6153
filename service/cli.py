"""The `mmd` command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported lazily, only for the subcommand that runs, so `mmd serve-gateway` (and the
gateway image) never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("worker.generate_cli", "run the generation pipeline locally and write an MP4"),
    "serve": ("service.serve", "gateway + in-process worker (+ embedded Redis) on one machine"),
    "gateway": ("service.gateway_cli", "run the HTTP gateway only (no torch)"),
    "worker": ("worker.main", "run an RQ GPU/CPU worker that loads the models once"),
    "fetch-weights": ("worker.fetch_weights", "download checkpoints from S3 and verify sha256"),
    "cleanup": ("service.cleanup_cli", "delete results and uploads older than MMD_RESULT_TTL_S"),
    "hash-key": ("service.hash_key_cli", "print the sha256 digest of an API key for MMD_API_KEYS"),
}


def _load(module_name: str):  # noqa: ANN202 - a module object
    return importlib.import_module(module_name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="mmd", description="MM-Diffusion inference service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    return int(_load(SUBCOMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The ``mmd`` command: the gateway's and the worker's commands, and ``mmd serve``, which
composes the two on one machine. Dispatching is :func:`core.commands.dispatch`."""

from __future__ import annotations

from collections.abc import Sequence

from core.commands import dispatch
from service.commands import COMMANDS as GATEWAY_COMMANDS
from worker.commands import COMMANDS as WORKER_COMMANDS

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": WORKER_COMMANDS["generate"],
    "serve": ("cli.serve", "gateway + in-process worker (+ embedded Redis) on one machine"),
    "gateway": GATEWAY_COMMANDS["gateway"],
    "worker": WORKER_COMMANDS["worker"],
    "fetch-weights": WORKER_COMMANDS["fetch-weights"],
    "demo-clip": WORKER_COMMANDS["demo-clip"],
    "train-demo": WORKER_COMMANDS["train-demo"],
    "cleanup": GATEWAY_COMMANDS["cleanup"],
    "hash-key": GATEWAY_COMMANDS["hash-key"],
    "submit": ("client.cli", "submit a job to a running service, follow it, download the MP4"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("mmd", SUBCOMMANDS, argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

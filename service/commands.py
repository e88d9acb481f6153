"""The gateway's commands: what the gateway image runs (``mmd-gateway COMMAND``, the same
subcommands as ``mmd``'s of these names)."""

from __future__ import annotations

from collections.abc import Sequence

from core.commands import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "gateway": ("service.gateway_cli", "run the HTTP gateway only (no torch)"),
    "cleanup": ("service.cleanup_cli", "delete results and uploads older than MMD_RESULT_TTL_S"),
    "hash-key": ("service.hash_key_cli", "print the sha256 digest of an API key for MMD_API_KEYS"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("mmd-gateway", COMMANDS, argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

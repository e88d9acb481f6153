"""Configured API keys: sha256 digests (``MMD_API_KEYS``, ``MMD_API_KEYS_FILE``), each optionally
named (``name:hex``). Parsing them is shared by the settings' validation and the gateway's
:mod:`service.auth` (which loads them and checks requests); the key itself is never configured."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ENTRY = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.\-]{1,64}):)?(?P<digest>[0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class KeyEntry:
    """One configured key: its id (stored as job owner) and its sha256 digest (bytes)."""

    key_id: str
    digest: bytes


def hash_key(key: str) -> str:
    """The sha256 hex digest to put in ``MMD_API_KEYS`` for the API key ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_entry(entry: str, *, where: str) -> KeyEntry:
    """``"<64 hex>"`` or ``"<name>:<64 hex>"`` -> :class:`KeyEntry`; ValueError otherwise."""
    m = _ENTRY.match(entry.strip())
    if m is None:
        raise ValueError(f"{where}: {entry[:12]!r}... is not a sha256 hex digest (64 hex digits, "
                         "optionally 'name:<hex>'); configure hashed keys, e.g. "
                         "`mmd hash-key KEY`, never the key itself")
    digest = m["digest"].lower()
    return KeyEntry(key_id=m["name"] or f"key-{digest[:12]}", digest=bytes.fromhex(digest))

"""``mmd hash-key KEY``: print the sha256 digest to configure in ``MMD_API_KEYS`` for a key
(``--new`` also generates a random key). The gateway only ever stores digests."""

from __future__ import annotations

import argparse
import secrets

from core.keys import hash_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", nargs="?", help="the API key to hash (omit with --new)")
    parser.add_argument("--new", action="store_true", help="generate a random key and hash it")
    parser.add_argument("--name", default=None, help="prefix the digest with 'NAME:' (key id)")


def run(args: argparse.Namespace) -> int:
    if (args.key is None) == (not args.new):
        print("give exactly one of KEY or --new")
        return 2
    key = secrets.token_urlsafe(32) if args.new else args.key
    if args.new:
        print(f"key:    {key}")
    digest = hash_key(key)
    print(f"{args.name}:{digest}" if args.name else digest)
    return 0

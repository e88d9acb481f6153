"""The one command-line dispatcher behind ``mmd`` (``cli.main``) and the gateway image's
``mmd-gateway`` (``service.commands``): a table of subcommands, each a module exposing
``add_arguments(parser)`` and ``run(args) -> int``, or a command with its own parser exposing
``main(argv) -> int`` (``mmd train-demo``, ``mmd demo-clip``: it gets the arguments after its
name). Only the module of the subcommand that runs is imported, so ``mmd --help`` stays fast and
the gateway never imports torch."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

# subcommand -> (module, one-line help)
Commands = Mapping[str, tuple[str, str]]


def dispatch(prog: str, commands: Commands, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) against ``commands`` and run the chosen one;
    returns its exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description="MM-Diffusion inference service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = args_in[0] if args_in and args_in[0] in commands else None
    if chosen is not None:
        module = importlib.import_module(commands[chosen][0])
        if not hasattr(module, "add_arguments"):  # its own parser: main(argv)
            return int(module.main(args_in[1:]) or 0)
    for name, (module_name, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(args_in)
    return int(importlib.import_module(commands[args.command][0]).run(args) or 0)

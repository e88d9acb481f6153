"""The package layers import only downwards (docs/architecture.md):

``cli`` -> ``service``, ``worker`` -> ``core``; ``worker`` -> ``model``; ``model`` imports none of
them; ``service`` and ``worker`` never import each other; ``core`` and ``service`` never import
torch; ``core`` imports no web framework. Read from the source (every ``import`` statement,
lazy ones inside functions included), so no package needs to be importable to be checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# package -> top-level names it may never import (third-party ones included)
FORBIDDEN: dict[str, set[str]] = {
    "core": {"service", "worker", "model", "cli", "torch", "fastapi", "starlette", "uvicorn"},
    "service": {"worker", "model", "cli", "torch"},
    "worker": {"service", "cli"},
    "model": {"core", "service", "worker", "cli"},
    # the Python client is standalone: httpx and the standard library only
    "client": {"core", "service", "worker", "model", "cli", "torch", "fastapi", "starlette",
               "uvicorn", "redis", "rq"},
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """``(top-level module, line)`` of every absolute import in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_its_lower_layers(package: str) -> None:
    bad = [f"{path.relative_to(REPO_ROOT)}:{line} imports {root}"
           for path in sorted((REPO_ROOT / package).rglob("*.py"))
           for root, line in sorted(imported_roots(path)) if root in FORBIDDEN[package]]
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_the_check_sees_imports() -> None:
    """The parser finds lazy imports inside functions (the kind that used to cross layers)."""
    roots = {root for root, _ in imported_roots(REPO_ROOT / "cli" / "serve.py")}
    assert {"service", "worker", "core"} <= roots


def test_mmd_offers_the_gateways_and_the_workers_commands_serve_and_submit() -> None:
    from cli.main import SUBCOMMANDS
    from service.commands import COMMANDS as GATEWAY
    from worker.commands import COMMANDS as WORKER

    assert set(SUBCOMMANDS) == {"serve", "submit", *GATEWAY, *WORKER}
    assert all(SUBCOMMANDS[name] == entry for name, entry in {**GATEWAY, **WORKER}.items())

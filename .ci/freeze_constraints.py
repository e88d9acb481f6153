"""Print the exact versions of everything ``pip install -e ".[worker,test]"`` needs, as installed
in this environment: the dependency closure of mmd-serve with its extras (constraints.txt), and
the packages installed without their dependencies (NO_DEPS).

    python3 .ci/freeze_constraints.py > constraints.txt

Run it in an environment where the suite passes; the project itself and torch (installed first,
CPU or CUDA build of the same version) are left out: torch is pinned by the install command.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("worker", "test")
LEFT_OUT = {"torch", "mmd-serve"}
# Installed with `pip install --no-deps -c constraints.txt NAME` (.ci/run): pinned here, their
# declared dependencies not followed (imagebind-unofficial asks for torchvision, torchaudio,
# pytorchvideo and decord, which the aligner never imports; pyproject's `imagebind` extra lists
# what its model code does import).
NO_DEPS = ("imagebind-unofficial",)


def top_level() -> list[Requirement]:
    """The project's dependencies and those of EXTRAS, with the project's own extras that an
    extra names (``mmd-serve[imagebind]``) expanded from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    todo, done = list(EXTRAS), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for raw in project["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == "mmd-serve":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def closure(roots: list[Requirement]) -> dict[str, str]:
    """name -> installed version of every distribution ``roots`` pull in (markers evaluated
    for this interpreter)."""
    env = default_environment()
    seen: dict[str, str] = {}
    todo = [(r, "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed; install the project first")
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen[key] = dist.version
        if name in NO_DEPS:
            continue
        for raw in dist.requires or []:
            sub = Requirement(raw)
            wanted = [e for e in req.extras] or [""]
            for e in wanted:
                todo.append((sub, e))
    return {re.sub(r"\[.*\]$", "", k): v for k, v in seen.items()}


def main() -> None:
    pins = closure(top_level() + [Requirement(name) for name in NO_DEPS])
    print("# Known-good versions of mmd-serve's dependencies and test dependencies, from")
    print("# `python3 .ci/freeze_constraints.py` (see there). Install with:")
    print('#   pip install torch==2.13.0 && pip install -c constraints.txt -e ".[worker,test]"')
    print(f"#   pip install --no-deps -c constraints.txt {' '.join(NO_DEPS)}")
    for name in sorted(pins):
        if name not in LEFT_OUT:
            print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()

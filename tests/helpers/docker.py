"""Reading the Dockerfiles in docker/ (for the deployment tests)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def dockerfile_env(name: str) -> dict[str, str]:
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "docker" / name).read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env

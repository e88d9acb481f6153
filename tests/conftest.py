"""Shared test fixtures: paths to the golden tensors and the real media clips; the real-server
fixtures (redis-server, SeaweedFS, settings on them, a job store) are ``tests.helpers.fixtures``,
available to every test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.helpers.fixtures"]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
# The two released clips stay outside the repo; tests that use them skip when it is absent.
SHARED_MEDIA = (REPO_ROOT.parent / "shared" / "media").resolve()


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """Folder with landscape.mp4 and audioset.mp4; skips the test when it is missing."""
    if not (SHARED_MEDIA / "landscape.mp4").is_file():
        pytest.skip(f"real media folder {SHARED_MEDIA} is absent (needs ../shared/media)")
    return SHARED_MEDIA


# Skip reasons that mean "a tool or file the suite needs is missing" (not a skip by design, such
# as a CUDA-only test): with MMD_STRICT_SKIPS=1 (set by .ci/run) they fail the test instead.
MISSING_MARKERS = ("not installed", "is missing", "is absent", "has no weed binary")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and os.environ.get("MMD_STRICT_SKIPS") == "1"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    if any(marker in reason for marker in MISSING_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"MMD_STRICT_SKIPS: {reason} (install it: README, Tests)"

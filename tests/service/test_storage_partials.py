"""LocalStorage writes are atomic: temp files live under ``.partial`` (never a key), an aborted
write leaves no object, and temp files of dead writers are swept by age."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.storage import PARTIAL_DIR, LocalStorage


def test_object_appears_only_when_the_write_completes(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with store.writer("results/j/sample_0.mp4", content_type="video/mp4") as fh:
        fh.write(b"abc")
        assert store.size("results/j/sample_0.mp4") is None  # not visible mid-write
        assert len(list((tmp_path / PARTIAL_DIR).iterdir())) == 1
    assert store.size("results/j/sample_0.mp4") == 3
    assert list((tmp_path / "results" / "j").iterdir()) == [tmp_path / "results/j/sample_0.mp4"]
    assert list((tmp_path / PARTIAL_DIR).iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer("results/k/sample_0.mp4", content_type="video/mp4") as fh:
            fh.write(b"partial")
            raise RuntimeError("writer died")
    assert store.size("results/k/sample_0.mp4") is None
    assert list((tmp_path / PARTIAL_DIR).iterdir()) == []


def test_stale_partials_are_swept_fresh_ones_kept(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    old = tmp_path / PARTIAL_DIR / "tmp-old.part"
    fresh = tmp_path / PARTIAL_DIR / "tmp-fresh.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert store.sweep_partials(3600) == 1
    assert not old.exists() and fresh.exists()


def test_partial_dir_is_not_a_valid_key(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(ValueError, match="invalid storage key"):
        store.size(f"{PARTIAL_DIR}/tmp-x.part")

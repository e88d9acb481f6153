"""Fixtures of the worker tests: real Redis, isolated settings, a job store, the tiny models."""

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def tiny() -> Iterator[Any]:
    """The randomly initialised tiny base + SR models (seed 0), one torch thread (2 shared
    CPU cores: one thread avoids oversubscription stalls)."""
    from model.registry import load_models

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield load_models("default", preset="tiny")
    torch.set_num_threads(threads)

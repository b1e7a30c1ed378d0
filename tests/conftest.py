"""Shared pytest fixtures."""
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _speed_settings():
    """The tests run under minicnn's speed settings, as every training run does (minicnn/kernels/process.py)."""
    from minicnn.kernels.process import speed_settings
    with speed_settings():
        yield


@pytest.fixture
def rng():
    """A fresh, seeded np.random.Generator per test (tests are reproducible and independent)."""
    return np.random.default_rng(12345)


# -- the real CIFAR slice: CI must fail, not skip, when it is missing ------------------------------------
import os  # noqa: E402
from pathlib import Path  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    """With MINICNN_REQUIRE_DATA=1 (set by .ci/run), a missing ../shared/data is an error, not 17 skips."""
    missing = [d for d in ("cifar-10-batches-py", "cifar-100-python") if not (SHARED_DATA / d).is_dir()]
    if os.environ.get("MINICNN_REQUIRE_DATA") == "1" and missing:
        raise pytest.UsageError(f"MINICNN_REQUIRE_DATA=1 but the CIFAR slice is not at {SHARED_DATA}; "
                                "the accuracy gate and the data tests cannot run")


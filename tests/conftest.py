"""Shared pytest fixtures."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, seeded np.random.Generator per test (tests are reproducible and independent)."""
    return np.random.default_rng(12345)

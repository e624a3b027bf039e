"""Shared test configuration: data paths, the --runslow switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: CI and developers keep the shared folder beside the checkout.
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: give --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """Path of the real MNIST npz (``QLANGEVIN_MNIST`` overrides)."""
    path = Path(os.environ.get("QLANGEVIN_MNIST", SHARED_MNIST))
    if not path.exists():
        pytest.skip(f"MNIST file not found at {path}")
    return path

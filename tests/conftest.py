"""Shared test configuration: data paths, the --runslow switch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _kernel_source_hash() -> str:
    """Hash of every ``refimpl`` source file.

    Numba's ``cache=True`` only checks the timestamp of the file that defines a
    function, so a kernel that inlines a helper from another module keeps the
    stale machine code after that helper changes.  Keying the cache directory by
    the hash of all kernel sources makes every test run use code compiled from
    the sources it is testing.
    """
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "refimpl").rglob("*.py")):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# Both must be set before numba / numpy are first imported (conftest is loaded
# before any test module, also in every pytest-xdist worker).
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO_ROOT / ".numba_cache" / _kernel_source_hash()))
# Two xdist workers on a 2-core machine: multi-threaded BLAS only oversubscribes.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests explore the same examples on every run (a reproducible suite,
# like the fixed seeds of the statistical tests).  For a wider random search:
#   HYPOTHESIS_PROFILE=explore python -m pytest tests -k property
settings.register_profile("default", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
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

"""Shared test configuration: data paths, the --runslow switch."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _install_numba_cache() -> None:
    """Numba's cache directory keyed by the hash of every ``refimpl`` source (refimpl/_cache.py).

    Numba's ``cache=True`` only checks the timestamp of the file that defines a
    function, so a kernel that inlines a helper from another module keeps the
    stale machine code after that helper changes.  ``refimpl/__init__.py`` calls
    the same function for every entry point; here it runs before numba is first
    imported, with the cache beside the checkout.  The module is loaded from its
    file (it imports only the standard library) so that this does not import refimpl.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("_qlangevin_numba_cache", REPO_ROOT / "refimpl" / "_cache.py")
    os.environ.setdefault("QLANGEVIN_NUMBA_CACHE", str(REPO_ROOT / ".numba_cache"))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # installs on import


# Both must be set before numba / numpy are first imported (conftest is loaded
# before any test module, also in every pytest-xdist worker).
_install_numba_cache()
# The torch optimizers' default path compiles its update at the first step (compile=None,
# torchport.optim._fastpath.default_compile); hundreds of short-lived test optimizers would each
# pay that compile, so the suite runs the default path eagerly.  The compiled update is tested
# against the eager one explicitly (compile=True) in tests/torchport/test_default_path.py and
# test_fast.py.  Subprocesses (the CLI tests) inherit the setting.
os.environ.setdefault("QLANGEVIN_COMPILE", "0")
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

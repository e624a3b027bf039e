"""No stale machine code: editing a kernel source and rerunning uses the new code.

Numba's ``cache=True`` keys a kernel on its own file only; the sampler kernels in
``refimpl/sgld.py`` inline ``grad1`` from ``refimpl/targets.py``.  ``refimpl/_cache.py``
keys the cache directory by a hash of every refimpl source.  The end-to-end test
copies the packages into a temporary directory, runs ``refimpl.sample`` there (a fresh interpreter)
(populating the cache), edits the inlined Gaussian gradient (∇U = θ → 2θ, which
halves the stationary variance) and reruns: the second run must print the new
variance.  With Numba's own keying the second run would load the first run's
machine code from the same cache and print the old variance.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_cache_module(path: Path):
    spec = importlib.util.spec_from_file_location("_cache_under_test", path)
    module = importlib.util.module_from_spec(spec)
    old = os.environ.get("NUMBA_CACHE_DIR")
    try:
        spec.loader.exec_module(module)  # installs on import: restore the environment afterwards
    finally:
        if old is None:
            os.environ.pop("NUMBA_CACHE_DIR", None)
        else:
            os.environ["NUMBA_CACHE_DIR"] = old
    return module


def _copy_packages(dst: Path) -> Path:
    for pkg in ("refimpl", "qlangevin"):
        shutil.copytree(REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    return dst


def test_source_hash_changes_with_any_kernel_file(tmp_path):
    root = _copy_packages(tmp_path)
    mod = _load_cache_module(root / "refimpl" / "_cache.py")
    h0 = mod.kernel_source_hash(root / "refimpl")
    assert re.fullmatch(r"[0-9a-f]{16}", h0)
    qk = root / "refimpl" / "_qkernels.py"
    qk.write_text(qk.read_text() + "\n# edited\n")
    mod._hash_memo.clear()
    h1 = mod.kernel_source_hash(root / "refimpl")
    assert h1 != h0
    assert mod.cache_dir(tmp_path / "c").name.endswith(mod.kernel_source_hash())


def test_refimpl_import_sets_the_keyed_cache_dir():
    import numba.core.config

    import refimpl._cache as cache

    expected = f"qlangevin-kernels-{cache.kernel_source_hash()}"
    assert Path(os.environ["NUMBA_CACHE_DIR"]).name == expected
    assert Path(numba.core.config.CACHE_DIR).name == expected


def _sample_second_moment(root: Path, cache_base: Path) -> float:
    """E θ² of 4000 SGLD chains after 300 steps (η = 0.1), run in a fresh interpreter on the copied packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(root), QLANGEVIN_NUMBA_CACHE=str(cache_base), NUMBA_NUM_THREADS="1")
    code = ("import sys, refimpl; assert refimpl.__file__.startswith(sys.argv[1]), refimpl.__file__; "
            "x = refimpl.sample('sgld', 'gaussian', n_chains=4000, n_steps=300, step_size=0.1, seed=1, keep='last'); "
            "print(float((x[-1] ** 2).mean()))")
    res = subprocess.run([sys.executable, "-c", code, str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return float(res.stdout.strip().splitlines()[-1])


def test_edited_kernel_source_is_recompiled(tmp_path):
    root = _copy_packages(tmp_path / "src")
    cache_base = tmp_path / "numba-cache"
    before = _sample_second_moment(root, cache_base)
    assert abs(before - 1 / (1 - 0.1 / 2)) < 0.1  # SGLD on N(0,1): Var = 1/(1 − η/2)
    targets = root / "refimpl" / "targets.py"
    src = targets.read_text()
    edited, n = re.subn(r"(def grad1\(kind[^)]*\)[^:]*:.*?if kind == 0:\n\s+return) x\n", r"\1 2.0 * x\n", src, count=1, flags=re.S)
    if n != 1:
        pytest.fail("refimpl/targets.py: grad1's Gaussian branch not found; update this test's edit")
    edited = edited.replace("out[j] = x[j]\n", "out[j] = 2.0 * x[j]\n", 1)
    targets.write_text(edited)
    after = _sample_second_moment(root, cache_base)
    # ∇U = 2θ: Var = 1/(2(1 − η)) = 0.556; the stale kernel would print ≈ 1.05 again
    assert abs(after - 1 / (2 * (1 - 0.1))) < 0.06, (before, after)
    assert len([p for p in cache_base.iterdir() if p.name.startswith("qlangevin-kernels-")]) == 2

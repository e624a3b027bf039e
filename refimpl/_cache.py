"""Numba's on-disk cache keyed by the kernel sources: no stale machine code.

Numba's ``cache=True`` keys a compiled kernel on the timestamp of *its own*
file.  A sampler kernel in ``refimpl/sgld.py`` inlines helpers from
``refimpl/_qkernels.py`` and ``refimpl/targets.py``; after an edit to a helper
Numba would keep loading the old machine code.  :func:`install` points
``NUMBA_CACHE_DIR`` at a directory named by a hash of every ``refimpl`` source
file, so an edit anywhere in the kernels gives a fresh cache.  It runs from
``refimpl/__init__.py`` (importing this module installs it) -- before any kernel
is compiled -- so every entry point
(``qlangevin verify``, ``sample``, ``crosscheck``, ``train``, a plain
``import refimpl``) and the test suite (``tests/conftest.py``) use code compiled
from the sources they are running.

Where: ``$QLANGEVIN_NUMBA_CACHE`` if set, else ``$XDG_CACHE_HOME/qlangevin/numba``
(``~/.cache/qlangevin/numba``), then one sub-directory per source hash.  A
``NUMBA_CACHE_DIR`` already set by the user is kept as the base (the hash is
appended).  This module imports nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__all__ = ["cache_dir", "install", "kernel_source_hash"]

_PKG = Path(__file__).resolve().parent
_MARK = "qlangevin-kernels-"
_hash_memo: dict[str, str] = {}


def kernel_source_hash(package_dir: Path | str | None = None) -> str:
    """SHA-256 (first 16 hex digits) of every ``*.py`` file under ``refimpl/`` (paths and bytes, sorted)."""
    root = Path(package_dir) if package_dir is not None else _PKG
    key = str(root)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
        _hash_memo[key] = digest.hexdigest()[:16]
    return _hash_memo[key]


def _default_base() -> Path:
    env = os.environ.get("QLANGEVIN_NUMBA_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "qlangevin" / "numba"


def cache_dir(base: Path | str | None = None) -> Path:
    """The cache directory for the current kernel sources: ``base / "qlangevin-kernels-<hash>"``."""
    return Path(base if base is not None else _default_base()) / f"{_MARK}{kernel_source_hash()}"


def install(base: Path | str | None = None) -> Path:
    """Set ``NUMBA_CACHE_DIR`` to :func:`cache_dir` (also in a Numba already imported); returns it.

    ``base``: parent directory (default: see the module docstring).  A
    ``NUMBA_CACHE_DIR`` that already names the right hash directory is kept (child
    processes inherit it); one naming another directory is used as the base.
    """
    current = os.environ.get("NUMBA_CACHE_DIR")
    want_name = f"{_MARK}{kernel_source_hash()}"
    if current and Path(current).name == want_name and base is None:
        target = Path(current)
    else:
        if base is None and current:
            cur = Path(current)
            base = cur.parent if cur.name.startswith(_MARK) else cur
        target = cache_dir(base)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # Numba already imported: its config was read at import time
        config.CACHE_DIR = str(target)
    return target


# Installed on import (refimpl/__init__.py imports this module before anything that compiles).
install()

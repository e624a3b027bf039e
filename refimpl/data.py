"""NumPy MNIST loader for the reference targets (no torch).

Accepted sources (``load_mnist(path)``):

* the shared ``mnist.npz`` layout (keys ``x_train`` (60000, 28, 28) uint8,
  ``y_train`` (60000,) uint8, ``x_test``, ``y_test``; shared/data/README.md);
* a directory holding that npz (``mnist.npz``), or the four standard IDX files
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped
  (``.gz``) and optionally named with ``.`` instead of ``-`` before ``idx``;
* ``None``: ``$QLANGEVIN_MNIST`` if set, else ``<repo>/../shared/data/mnist.npz``.

No network access happens here.  Bad paths or malformed files raise
``FileNotFoundError`` / ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "read_idx", "default_mnist_path", "IDX_NAMES"]

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_mnist_path() -> Path:
    """``$QLANGEVIN_MNIST`` or the shared ``../shared/data/mnist.npz`` beside the checkout."""
    env = os.environ.get("QLANGEVIN_MNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped if the name ends in ``.gz``) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: expected {count * dtype.itemsize} data bytes for shape {shape}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            p = directory / (name + suffix)
            if p.is_file():
                return p
    return None


def _check(data: dict, source) -> dict:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in data:
            raise ValueError(f"{source}: missing {key!r}")
    for split in ("train", "test"):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise ValueError(f"{source}: x_{split} must be (n, 28, 28) with y_{split} (n,), got {x.shape} and {y.shape}")
    return data


def load_mnist(path=None) -> dict:
    """MNIST as a dict of uint8 arrays ``x_train, y_train, x_test, y_test`` (see module doc)."""
    p = default_mnist_path() if path is None else Path(path)
    if p.is_dir():
        npz = p / "mnist.npz"
        if npz.is_file():
            p = npz
        else:
            files = {key: _find_idx(p, stem) for key, stem in IDX_NAMES.items()}
            missing = [IDX_NAMES[k] for k, f in files.items() if f is None]
            if missing:
                raise FileNotFoundError(f"{p}: no mnist.npz and missing IDX files {missing} (gzipped or not)")
            return _check({k: read_idx(f) for k, f in files.items()}, p)
    if not p.is_file():
        raise FileNotFoundError(f"MNIST not found at {p} (give the npz, a directory of IDX files, or set QLANGEVIN_MNIST)")
    try:
        with np.load(p) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: not a readable npz file ({exc})") from None
    return _check(data, p)

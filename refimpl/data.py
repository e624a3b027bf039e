"""MNIST: the one reader both packages use (NumPy only, no torch).

Accepted sources (``load_mnist(path)``):

* the shared ``mnist.npz`` layout (keys ``x_train`` (60000, 28, 28) uint8,
  ``y_train`` (60000,) uint8, ``x_test`` (10000, 28, 28) uint8, ``y_test`` (10000,) uint8;
  shared/data/README.md), read with ``allow_pickle=False``;
* a directory holding the four standard IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally gzipped (detected from the content, not the name; ``.gz`` names are
  found too) and optionally named with ``.`` instead of ``-`` before ``idx``, directly
  or one level down in ``MNIST/raw`` (torchvision's layout) or ``raw``;
* a directory holding ``mnist.npz`` (used when the IDX files are not all there);
* ``None``: :func:`default_mnist_path` -- ``$QLANGEVIN_MNIST`` if set, else
  ``<repo>/../shared/data/mnist.npz``.

One environment variable, ``QLANGEVIN_MNIST`` (a file or a directory as above).  The
older ``QLANGEVIN_DATA`` of ``qlangevin train`` is still read when ``QLANGEVIN_MNIST``
is unset, with a ``DeprecationWarning``.

:mod:`torchport.data` builds on this module (tensors, checks, download); it does not
parse files itself.  No network access and no randomness here.  Bad paths or malformed
files raise ``FileNotFoundError`` / ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["load_mnist", "read_idx", "write_idx", "default_mnist_path", "validate_mnist", "IDX_NAMES",
           "ENV_VAR", "DEPRECATED_ENV_VAR"]

#: The environment variable naming the MNIST file or directory.
ENV_VAR = "QLANGEVIN_MNIST"
#: Read when :data:`ENV_VAR` is unset, with a DeprecationWarning (was ``qlangevin train``'s).
DEPRECATED_ENV_VAR = "QLANGEVIN_DATA"

#: The four standard file names (without ``.gz``), keyed by array name.
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KEYS = tuple(IDX_NAMES)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def default_mnist_path() -> Path:
    """``$QLANGEVIN_MNIST`` (or the deprecated ``$QLANGEVIN_DATA``), else ``../shared/data/mnist.npz``
    beside the checkout."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    old = os.environ.get(DEPRECATED_ENV_VAR)
    if old:
        warnings.warn(f"${DEPRECATED_ENV_VAR} is deprecated; set ${ENV_VAR} (same meaning: the MNIST npz "
                      "or a directory holding it or the IDX files)", DeprecationWarning, stacklevel=2)
        return Path(old).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


# ---------------------------------------------------------------------------- IDX files


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"path={str(path)!r}: unreadable gzip stream ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not; detected from the content, not the name).

    Format (LeCun's IDX): two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension
    as a big-endian uint32, then the data in C order, big-endian.

    Returns an array of the stored dtype (native byte order) and shape.  Raises
    ``ValueError`` naming the file for a bad magic number or a size mismatch,
    ``TypeError`` if ``path`` is not a path, ``FileNotFoundError`` for a missing file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"path={str(path)!r}: not an IDX file (bad magic bytes {data[:4]!r})")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"path={str(path)!r}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"path={str(path)!r}: IDX header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(data) - header} data bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None,
              compresslevel: int = 6) -> Path:
    """Write ``array`` (uint8 or int8) as an IDX file; gzip when ``compress`` (default: name ends in .gz).

    The bytes are those of the standard MNIST files (header then raw data), so writing the
    npz arrays reproduces the published uncompressed files exactly.  The gzip stream is
    written with mtime 0, so the output is deterministic.  ``compresslevel``: gzip's
    0-9 (checked also when the file is not compressed).
    """
    if isinstance(compresslevel, (bool, np.bool_)) or not isinstance(compresslevel, numbers.Integral) \
            or not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be an integer in [0, 9], got {compresslevel!r}")
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in _IDX_CODES:
        raise TypeError(f"array.dtype={array.dtype}: write_idx supports uint8 and int8 only")
    if compress is None:
        compress = path.suffix == ".gz"
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array).tobytes()
    if compress:
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def _find_idx(directory: Path, stem: str) -> Path | None:
    for sub in (directory, directory / "MNIST" / "raw", directory / "raw"):
        for name in (stem, stem.replace("-idx", ".idx")):
            for suffix in ("", ".gz"):
                candidate = sub / (name + suffix)
                if candidate.is_file():
                    return candidate
    return None


# ---------------------------------------------------------------------------- loading


def validate_mnist(data: dict, source: str) -> dict:
    """Check keys, shapes (n, 28, 28) / (n,), uint8 images and labels 0..9; return uint8 arrays.

    Raises ``ValueError`` starting with ``source`` and naming the failed check
    (``TypeError`` if ``data`` is not a mapping).
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{source}: data must be a mapping of arrays (keys {list(KEYS)}), got {type(data).__name__}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"{source}: lacks keys {missing} (has {sorted(data)})")
    out = {}
    for split in ("train", "test"):
        x, y = np.asarray(data[f"x_{split}"]), np.asarray(data[f"y_{split}"])
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise ValueError(f"{source}: x_{split} must be (n, 28, 28) with y_{split} (n,), "
                             f"got {x.shape} and {y.shape}")
        if x.dtype != np.uint8:
            raise ValueError(f"{source}: x_{split} must be uint8 pixels, got {x.dtype}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{source}: y_{split} must hold integer labels, got {y.dtype}")
        if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
            raise ValueError(f"{source}: y_{split} must hold labels 0..9, got range [{y.min()}, {y.max()}]")
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = np.ascontiguousarray(y).astype(np.uint8, copy=False)
    return {k: out[k] for k in KEYS}


def load_mnist(path: str | os.PathLike | None = None) -> dict:
    """MNIST as a dict of uint8 arrays ``x_train, y_train, x_test, y_test`` (see the module doc).

    Raises ``FileNotFoundError`` naming what was looked for, ``ValueError`` for malformed
    content (not an npz, missing keys, wrong shapes or dtypes, labels outside 0..9).
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r}: must be a file or directory path (str or os.PathLike) or None")
    p = default_mnist_path() if path is None else Path(path).expanduser()
    if p.is_dir():
        found = {key: _find_idx(p, stem) for key, stem in IDX_NAMES.items()}
        if all(found.values()):
            return validate_mnist({k: read_idx(f) for k, f in found.items()}, f"path={str(p)!r}")
        if (p / "mnist.npz").is_file():
            p = p / "mnist.npz"
        else:
            missing = [IDX_NAMES[k] for k, f in found.items() if f is None]
            raise FileNotFoundError(f"path={str(p)!r}: no mnist.npz and missing IDX files {missing} "
                                    "(gzipped or not)")
    if not p.is_file():
        raise FileNotFoundError(f"path={str(p)!r}: no such file or directory (give the npz, a directory of "
                                f"IDX files, or set ${ENV_VAR})")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"path={str(p)!r}: not a readable npz file ({exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"path={str(p)!r}: not an npz archive (a single array of shape {np.shape(z)})")
    try:
        data = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"path={str(p)!r}: not a readable npz file ({exc})") from None
    finally:
        z.close()
    return validate_mnist(data, f"path={str(p)!r}")

"""MNIST for the torchport training driver: readers, a download path, checks, tensors.

Sources understood by :func:`load_mnist`

* the npz layout of ``shared/data/mnist.npz`` (keys ``x_train`` (60000, 28, 28) uint8,
  ``y_train`` (60000,) uint8, ``x_test`` (10000, 28, 28) uint8, ``y_test`` (10000,) uint8);
* a directory holding the four standard IDX files, gzipped or not
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``), also one level down
  in ``MNIST/raw`` (torchvision's layout) or ``raw``;
* a directory holding ``mnist.npz``.

:func:`download_mnist` fetches the four gzipped IDX files from a list of mirrors with the
standard library (``urllib``), checks their MD5 and the decoded content, and returns the
directory.  It is tested against a local HTTP server on 127.0.0.1 (no network here).

Preprocessing follows the LP-SGHMC MNIST code (comeusr/Low-precisionSGHMC, ALGORITHMS
§6.3): pixels divided by 255 and normalised with the training-set mean 0.1307 and standard
deviation 0.3081.  The ``"padded32x3"`` layout (for the ResNets) pads each 28×28 image with
two black pixels on every side and repeats it on three channels; the padding is done
*before* normalisation, so padded pixels equal a black pixel.

No randomness is consumed here except by :func:`subset_indices`, which takes an explicit
``torch.Generator``; minibatch order is produced by :func:`epoch_permutation`, a pure
function of ``(seed, epoch)`` so that a resumed run (and every DDP rank) recomputes it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

#: Training-set pixel mean and standard deviation after dividing by 255 (README of the npz).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: Training-set class counts of the standard split, digits 0..9.
MNIST_TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
#: Test-set class counts of the standard split (from the npz; sums to 10000).
MNIST_TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

#: The four standard file names (without ``.gz``), keyed by array name.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: MD5 of the published gzipped files (the values torchvision checks).
IDX_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Standard mirrors, tried in order; override with ``mirrors=`` or ``QLANGEVIN_MNIST_MIRRORS``
#: (comma separated).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}

LAYOUTS = ("flat", "image", "padded32x3")


class MNISTArrays(NamedTuple):
    """The raw standard split, exactly as the IDX files hold it (uint8)."""

    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8


# ---------------------------------------------------------------------------- IDX files


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not; detected from the content, not the name).

    Format (LeCun's IDX): two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension
    as a big-endian uint32, then the data in C order, big-endian.

    Returns an array of the stored dtype (native byte order) and shape.  Raises
    ``ValueError`` naming the file for a bad magic number or a size mismatch.
    """
    path = Path(path)
    with _open_maybe_gzip(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"path={str(path)!r}: not an IDX file (magic bytes {data[:4]!r})")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
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
    written with mtime 0, so the output is deterministic.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in _IDX_CODES:
        raise TypeError(f"array.dtype={array.dtype}: write_idx supports uint8 and int8 only")
    if compress is None:
        compress = path.suffix == ".gz"
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + np.asarray(
        array.shape, dtype=">u4"
    ).tobytes()
    payload = header + np.ascontiguousarray(array).tobytes()
    if compress:
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist_idx(arrays: MNISTArrays, directory: str | os.PathLike, *, compress: bool = True,
                    compresslevel: int = 6) -> Path:
    """Write the four standard IDX files (``.gz`` when ``compress``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        write_idx(directory / (name + (".gz" if compress else "")), getattr(arrays, key), compress=compress,
                  compresslevel=compresslevel)
    return directory


# ---------------------------------------------------------------------------- loading


def _find_idx(directory: Path, name: str) -> Path | None:
    for sub in (directory, directory / "MNIST" / "raw", directory / "raw"):
        for candidate in (sub / name, sub / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _validate(arrays: MNISTArrays, source: str) -> MNISTArrays:
    for key in ("x_train", "x_test"):
        x = getattr(arrays, key)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{source}: {key} must be uint8 of shape (n, 28, 28), got {x.dtype} {x.shape}")
    for key, xkey in (("y_train", "x_train"), ("y_test", "x_test")):
        y = getattr(arrays, key)
        if y.ndim != 1 or y.shape[0] != getattr(arrays, xkey).shape[0]:
            raise ValueError(f"{source}: {key} must have shape ({getattr(arrays, xkey).shape[0]},), got {y.shape}")
        if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
            raise ValueError(f"{source}: {key} must hold labels 0..9, got range [{y.min()}, {y.max()}]")
    return MNISTArrays(*(np.ascontiguousarray(a).astype(np.uint8, copy=False) for a in arrays))


def load_mnist(path: str | os.PathLike) -> MNISTArrays:
    """Load MNIST from an npz file, a directory with ``mnist.npz``, or a directory of IDX files.

    Returns :class:`MNISTArrays` (uint8).  Raises ``FileNotFoundError`` naming what was
    looked for, ``ValueError`` for malformed content (wrong shapes, labels outside 0..9).
    No randomness.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = {key: _find_idx(path, name) for key, name in IDX_FILES.items()}
        if all(found.values()):
            arrays = MNISTArrays(*(read_idx(found[k]) for k in IDX_FILES))
            return _validate(arrays, f"path={str(path)!r}")
        if (path / "mnist.npz").is_file():
            path = path / "mnist.npz"
        else:
            missing = [IDX_FILES[k] for k, v in found.items() if v is None]
            raise FileNotFoundError(
                f"path={str(path)!r}: no mnist.npz and missing IDX files {missing} (optionally .gz)"
            )
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file or directory")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in MNISTArrays._fields if k not in npz.files]
        if missing:
            raise ValueError(f"path={str(path)!r}: npz lacks keys {missing} (has {npz.files})")
        arrays = MNISTArrays(*(npz[k] for k in MNISTArrays._fields))
    return _validate(arrays, f"path={str(path)!r}")


def check_mnist(arrays: MNISTArrays, *, atol: float = 5e-4) -> dict:
    """Check that ``arrays`` is the standard MNIST split (the checks of the npz's README).

    * training pixels /255 have mean 0.1307 and standard deviation 0.3081 (to ``atol``;
      the published four-digit values are rounded, so the true values lie within 5e-5);
    * training class counts equal :data:`MNIST_TRAIN_CLASS_COUNTS` and test class counts
      :data:`MNIST_TEST_CLASS_COUNTS` exactly.

    Returns the measured values; raises ``ValueError`` naming the failed check.
    """
    x = arrays.x_train.astype(np.float64) / 255.0
    mean, std = float(x.mean()), float(x.std())
    counts_train = tuple(int(c) for c in np.bincount(arrays.y_train, minlength=10))
    counts_test = tuple(int(c) for c in np.bincount(arrays.y_test, minlength=10))
    if abs(mean - MNIST_MEAN) > atol:
        raise ValueError(f"training pixel mean {mean:.6f} differs from {MNIST_MEAN} by more than {atol}")
    if abs(std - MNIST_STD) > atol:
        raise ValueError(f"training pixel std {std:.6f} differs from {MNIST_STD} by more than {atol}")
    if counts_train != MNIST_TRAIN_CLASS_COUNTS:
        raise ValueError(f"training class counts {counts_train} != {MNIST_TRAIN_CLASS_COUNTS}")
    if counts_test != MNIST_TEST_CLASS_COUNTS:
        raise ValueError(f"test class counts {counts_test} != {MNIST_TEST_CLASS_COUNTS}")
    return {"mean": mean, "std": std, "train_counts": counts_train, "test_counts": counts_test}


# ---------------------------------------------------------------------------- download


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_mnist(
    root: str | os.PathLike,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    md5: dict[str, str] | None | str = "default",
    check: bool = True,
    timeout: float = 60.0,
    overwrite: bool = False,
) -> Path:
    """Download the four gzipped IDX files into ``root`` and return ``root``.

    Each file is fetched from the first mirror in ``mirrors`` that serves it (default
    :data:`DEFAULT_MIRRORS`, or the comma-separated ``QLANGEVIN_MNIST_MIRRORS``; any URL
    scheme ``urllib`` supports, ``file://`` included), written to a temporary name and
    renamed only once complete and verified.

    ``md5``: ``"default"`` checks :data:`IDX_GZ_MD5`, a dict checks the given values, ``None``
    skips the checksum (the content is still checked when ``check``).  ``check`` runs
    :func:`check_mnist` on the decoded files.  Files already present are kept unless
    ``overwrite``.  Raises ``ValueError`` on a checksum mismatch (the bad file is removed)
    and ``OSError`` when no mirror serves a file.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if mirrors is None:
        env = os.environ.get("QLANGEVIN_MNIST_MIRRORS")
        mirrors = tuple(m for m in env.split(",") if m) if env else DEFAULT_MIRRORS
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of URLs, got the string {mirrors!r}")
    if not mirrors:
        raise ValueError("mirrors=(): give at least one mirror URL")
    if md5 == "default":
        md5 = IDX_GZ_MD5
    elif md5 is not None and not isinstance(md5, dict):
        raise TypeError(f"md5 must be 'default', a dict or None, got {md5!r}")
    for name in IDX_FILES.values():
        fname = name + ".gz"
        target = root / fname
        if target.exists() and not overwrite:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror if mirror.endswith("/") else mirror + "/"
            url += fname
            fd, tmp = tempfile.mkstemp(prefix=fname + ".", suffix=".part", dir=root)
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
            except OSError as exc:  # URLError and HTTPError are OSErrors
                os.unlink(tmp)
                errors.append(f"{url}: {exc}")
                continue
            if md5 is not None and fname in md5:
                got = _md5(Path(tmp))
                if got != md5[fname]:
                    os.unlink(tmp)
                    raise ValueError(f"{url}: MD5 {got} != expected {md5[fname]}; file removed")
            os.replace(tmp, target)
            break
        else:
            raise OSError(f"could not download {fname}: " + "; ".join(errors))
    if check:
        check_mnist(load_mnist(root))
    return root


# ---------------------------------------------------------------------------- tensors


def to_tensors(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    layout: str = "image",
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert uint8 images (n, 28, 28) and labels (n,) to model inputs and int64 targets.

    ``layout``: ``"flat"`` → (n, 784); ``"image"`` → (n, 1, 28, 28);
    ``"padded32x3"`` → (n, 3, 32, 32) (2-pixel black border, channel repeated 3×).
    ``normalize``: x ↦ (x/255 − 0.1307)/0.3081, else x/255.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (n, 28, 28), got {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64) / 255.0
    if layout == "padded32x3":
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=0.0)
    if normalize:
        x = (x - MNIST_MEAN) / MNIST_STD
    if layout == "flat":
        x = x.reshape(x.shape[0], -1)
    elif layout == "image":
        x = x.unsqueeze(1)
    else:
        x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return x.to(dtype).contiguous(), y


def subset_indices(n_total: int, n: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of a subset of size ``n`` (all of them, in order, when ``n`` is None).

    The subset is the first ``n`` entries of ``torch.randperm(n_total, generator=generator)``
    when a generator is given, else the first ``n`` examples (MNIST's files are already in
    random order).  Raises ``ValueError`` when ``n`` is not in 1..n_total.
    """
    if n is None:
        return torch.arange(n_total)
    if not 1 <= int(n) <= n_total:
        raise ValueError(f"subset={n}: must be between 1 and {n_total}")
    if generator is None:
        return torch.arange(int(n))
    return torch.randperm(n_total, generator=generator)[: int(n)].sort().values


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Minibatch order of one epoch: ``torch.randperm(n)`` from a generator seeded with
    a pure function of ``(seed, epoch)``, so that resuming mid-epoch and every DDP rank
    reproduce it without carrying data-loader state."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + 7919 * int(epoch) + 0x5EED) % (2**63))
    return torch.randperm(n, generator=g)

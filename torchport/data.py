"""MNIST for the torchport training driver: readers, a download path, checks, tensors.

Sources understood by :func:`load_mnist` (which is :func:`refimpl.data.load_mnist`, the one
MNIST reader of the project; environment variable ``QLANGEVIN_MNIST``)

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

import hashlib
import math
import numbers
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from refimpl import data as _rdata
from torchport._seed import as_generator, check_int_seed

#: Training-set pixel mean and standard deviation after dividing by 255 (README of the npz).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: Training-set class counts of the standard split, digits 0..9.
MNIST_TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
#: Test-set class counts of the standard split (from the npz; sums to 10000).
MNIST_TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

#: The four standard file names (without ``.gz``), keyed by array name (from :mod:`refimpl.data`).
IDX_FILES = _rdata.IDX_NAMES
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

LAYOUTS = ("flat", "image", "padded32x3")


class MNISTArrays(NamedTuple):
    """The raw standard split, exactly as the IDX files hold it (uint8)."""

    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8


# ---------------------------------------------------------------------------- argument checks


def _check_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}={value!r:.80}: must be a path (str or os.PathLike)")
    return Path(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r}: must be True or False")
    return bool(value)


def _as_arrays(arrays, name: str = "arrays") -> MNISTArrays:
    """``arrays`` (MNISTArrays or a dict of the four arrays) checked by :func:`refimpl.data.validate_mnist`."""
    if isinstance(arrays, MNISTArrays):
        arrays = arrays._asdict()
    if not isinstance(arrays, dict):
        raise TypeError(f"{name}={arrays!r:.60}: must be MNISTArrays or a dict of the four arrays")
    return MNISTArrays(**_rdata.validate_mnist(arrays, name))


# ---------------------------------------------------------------------------- IDX files and loading

#: The IDX codec lives in :mod:`refimpl.data` (one reader for both packages); re-exported here.
read_idx = _rdata.read_idx
write_idx = _rdata.write_idx


def write_mnist_idx(arrays: MNISTArrays, directory: str | os.PathLike, *, compress: bool = True,
                    compresslevel: int = 6) -> Path:
    """Write the four standard IDX files (``.gz`` when ``compress``) into ``directory``.

    ``arrays`` is checked (shapes, uint8 pixels, labels 0..9) and so are ``compress`` (a bool)
    and ``compresslevel`` (an int 0..9) before anything is created.
    """
    arrays = _as_arrays(arrays)
    directory = _check_path("directory", directory)
    compress = _check_bool("compress", compress)
    if isinstance(compresslevel, bool) or not isinstance(compresslevel, numbers.Integral) \
            or not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel={compresslevel!r}: must be an int 0..9")
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        write_idx(directory / (name + (".gz" if compress else "")), getattr(arrays, key), compress=compress,
                  compresslevel=compresslevel)
    return directory


def load_mnist(path: str | os.PathLike | None = None) -> MNISTArrays:
    """Load MNIST with :func:`refimpl.data.load_mnist` (npz, a directory with ``mnist.npz``, a
    directory of IDX files; ``None``: ``$QLANGEVIN_MNIST`` or the shared file).

    Returns :class:`MNISTArrays` (uint8).  Raises ``FileNotFoundError`` naming what was
    looked for, ``ValueError`` for malformed content (wrong shapes, labels outside 0..9).
    No randomness.
    """
    if path is not None:
        _check_path("path", path)
    return MNISTArrays(**_rdata.load_mnist(path))


def check_mnist(arrays: MNISTArrays, *, atol: float = 5e-4) -> dict:
    """Check that ``arrays`` is the standard MNIST split (the checks of the npz's README).

    * training pixels /255 have mean 0.1307 and standard deviation 0.3081 (to ``atol``;
      the published four-digit values are rounded, so the true values lie within 5e-5);
    * training class counts equal :data:`MNIST_TRAIN_CLASS_COUNTS` and test class counts
      :data:`MNIST_TEST_CLASS_COUNTS` exactly.

    Returns the measured values; raises ``ValueError`` naming the failed check (``arrays``
    malformed -- shapes, dtypes, labels outside 0..9 -- or ``atol`` not a finite number > 0:
    ``ValueError``/``TypeError`` naming it).
    """
    if isinstance(atol, bool) or not isinstance(atol, numbers.Real) or not (math.isfinite(atol) and atol > 0):
        raise ValueError(f"atol={atol!r}: must be a finite number > 0")
    arrays = _as_arrays(arrays)
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
    and ``OSError`` when no mirror serves a file.  Every argument is checked before ``root``
    is created (ValueError/TypeError naming it).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: must be a finite number of seconds > 0")
    root = _check_path("root", root).expanduser()
    check = _check_bool("check", check)
    overwrite = _check_bool("overwrite", overwrite)
    if mirrors is None:
        env = os.environ.get("QLANGEVIN_MNIST_MIRRORS")
        mirrors = tuple(m for m in env.split(",") if m) if env else DEFAULT_MIRRORS
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of URLs, got the string {mirrors!r}")
    if not isinstance(mirrors, (tuple, list)):
        raise TypeError(f"mirrors={mirrors!r:.80}: must be a sequence of URLs")
    if not mirrors:
        raise ValueError(f"mirrors={mirrors!r}: give at least one mirror URL")
    if not all(isinstance(m, str) and m for m in mirrors):
        raise TypeError(f"mirrors={mirrors!r:.80}: every mirror must be a non-empty URL string")
    if isinstance(md5, str) and md5 == "default":
        md5 = IDX_GZ_MD5
    elif md5 is not None and not isinstance(md5, dict):
        raise TypeError(f"md5 must be 'default', a dict or None, got {md5!r}")
    elif md5 is not None:
        names = {n + ".gz" for n in IDX_FILES.values()}
        bad = {k: v for k, v in md5.items() if k not in names or not isinstance(v, str)}
        if bad:
            raise ValueError(f"md5={md5!r:.120}: entries {bad!r:.80} are not <gzipped IDX name>: <hex digest> "
                             f"(names {sorted(names)})")
    root.mkdir(parents=True, exist_ok=True)
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
    ``normalize``: x ↦ (x/255 − 0.1307)/0.3081, else x/255.  Labels must be digits 0..9.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype={dtype!r}: must be a floating torch.dtype such as torch.float32")
    normalize = _check_bool("normalize", normalize)
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (n, 28, 28), got {images.shape}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {images.shape[0]} integers (one per image), got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ValueError(f"labels must be digits 0..9, got range [{labels.min()}, {labels.max()}]")
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


def subset_indices(n_total: int, n: int | None, seed: int | torch.Generator | None = None) -> torch.Tensor:
    """Indices of a subset of size ``n`` (all of them, in order, when ``n`` is None).

    The subset is the first ``n`` entries of ``torch.randperm(n_total, generator=g)``, sorted,
    when ``seed`` (an int or a ``torch.Generator`` g) is given, else the first ``n`` examples
    (MNIST's files are already in random order).  Raises ``ValueError`` when ``n`` is not
    in 1..n_total.
    """
    if isinstance(n_total, bool) or not isinstance(n_total, numbers.Integral) or n_total < 1:
        raise ValueError(f"n_total={n_total!r}: must be a positive integer")
    if n is None:
        return torch.arange(n_total)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= int(n) <= n_total:
        raise ValueError(f"n={n!r} (the subset size): must be an integer between 1 and {n_total}")
    if seed is None:
        return torch.arange(int(n))
    return torch.randperm(n_total, generator=as_generator(seed, "seed"))[: int(n)].sort().values


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Minibatch order of one epoch: ``torch.randperm(n)`` from a generator seeded with
    a pure function of ``(seed, epoch)``, so that resuming mid-epoch and every DDP rank
    reproduce it without carrying data-loader state.  ``seed`` must be an int (a generator
    would make the order depend on what was drawn before)."""
    seed = check_int_seed(seed, "seed")
    epoch = check_int_seed(epoch, "epoch")
    n = check_int_seed(n, "n")
    g = torch.Generator().manual_seed((seed * 1_000_003 + 7919 * epoch + 0x5EED) % (2**63))
    return torch.randperm(n, generator=g)

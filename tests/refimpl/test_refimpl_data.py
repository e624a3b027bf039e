"""refimpl.data: MNIST from the shared npz or a directory of IDX files (gzipped or not)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from refimpl.data import IDX_NAMES, load_mnist, read_idx


def _write_idx(path, arr, gz):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_shared_npz_layout(mnist_path):
    d = load_mnist(mnist_path)
    assert d["x_train"].shape == (60000, 28, 28) and d["x_train"].dtype == np.uint8
    assert d["y_test"].shape == (10000,)
    assert abs(d["x_train"].mean() / 255 - 0.1307) < 1e-4
    assert np.bincount(d["y_train"])[0] == 5923


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_equals_npz_subset(tmp_path, gz):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (7, 28, 28)), "y_train": rng.integers(0, 10, 7),
              "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": rng.integers(0, 10, 3)}
    for key, stem in IDX_NAMES.items():
        _write_idx(tmp_path / stem, arrays[key], gz)
    d = load_mnist(tmp_path)
    for key, arr in arrays.items():
        assert np.array_equal(d[key], arr) and d[key].dtype == np.uint8
    np.savez(tmp_path / "other.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    d2 = load_mnist(tmp_path / "other.npz")
    assert all(np.array_equal(d2[k], arrays[k]) for k in arrays)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing IDX"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path / "nope.npz")
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(short)

"""torchport.data: IDX reader/writer, loaders, MNIST checks, download path, tensors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from torchport import data as tdata


@pytest.fixture(scope="module")
def mnist(mnist_path):
    return tdata.load_mnist(mnist_path)


@pytest.fixture(scope="module")
def idx_dir(mnist, tmp_path_factory):
    """The four standard files written (gzipped) from the npz."""
    return tdata.write_mnist_idx(mnist, tmp_path_factory.mktemp("idx"), compress=True, compresslevel=1)


def _same(a: tdata.MNISTArrays, b: tdata.MNISTArrays) -> bool:
    return all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------- the real file


def test_npz_is_standard_mnist(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.uint8
    info = tdata.check_mnist(mnist)
    # README: mean 0.1307 and std 0.3081 (four digits), so the exact values lie within 5e-5.
    assert abs(info["mean"] - 0.1307) <= 5e-5 and abs(info["std"] - 0.3081) <= 5e-5
    assert info["train_counts"] == tdata.MNIST_TRAIN_CLASS_COUNTS


@pytest.mark.parametrize("broken", ["labels", "pixels", "truncated"])
def test_check_mnist_rejects_altered_data(mnist, broken):
    if broken == "labels":  # one label changed: class counts differ
        y = mnist.y_train.copy()
        y[0] = (int(y[0]) + 1) % 10
        bad = mnist._replace(y_train=y)
    elif broken == "pixels":  # images slightly brightened: mean shifts by ~0.004
        bad = mnist._replace(x_train=np.minimum(mnist.x_train.astype(np.int16) + 1, 255).astype(np.uint8))
    else:
        bad = mnist._replace(x_train=mnist.x_train[:-1], y_train=mnist.y_train[:-1])
    with pytest.raises(ValueError):
        tdata.check_mnist(bad)


def test_written_idx_is_byte_identical_to_the_published_file(mnist, tmp_path):
    # README: the raw training-images IDX file's SHA-256 begins ba891046e6505d7a.
    path = tdata.write_idx(tmp_path / "train-images-idx3-ubyte", mnist.x_train)
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("ba891046e6505d7a")


# ---------------------------------------------------------------------------- IDX and loaders


@pytest.mark.parametrize("compress", [False, True])
def test_idx_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 256, (5, 3, 4), dtype=np.uint8), rng.integers(-128, 128, (7,), dtype=np.int8)):
        p = tdata.write_idx(tmp_path / ("a.gz" if compress else "a"), arr, compress=compress)
        back = tdata.read_idx(p)
        assert back.dtype == arr.dtype and np.array_equal(back, arr)
    # gzip detected from content, not name
    p = tdata.write_idx(tmp_path / "plainname", arr, compress=True)
    assert np.array_equal(tdata.read_idx(p), arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad"):
        tdata.read_idx(tmp_path / "bad")
    p = tdata.write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8))
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match="short"):
        tdata.read_idx(p)
    with pytest.raises(TypeError, match="dtype"):
        tdata.write_idx(tmp_path / "f", np.zeros(3, np.float32))


def test_load_from_idx_directories(mnist, idx_dir, tmp_path):
    assert _same(tdata.load_mnist(idx_dir), mnist)
    # torchvision layout, uncompressed, and a mix of gz and raw
    raw = tmp_path / "MNIST" / "raw"
    tdata.write_mnist_idx(mnist, raw, compress=False)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    tdata.write_idx(raw / "t10k-labels-idx1-ubyte.gz", mnist.y_test)
    assert _same(tdata.load_mnist(tmp_path), mnist)


def test_load_from_npz_dir_and_errors(mnist, mnist_path, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    np.savez(d / "mnist.npz", **mnist._asdict())
    assert _same(tdata.load_mnist(d), mnist)
    with pytest.raises(FileNotFoundError, match="no such file"):
        tdata.load_mnist(tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing IDX"):
        tdata.load_mnist(tmp_path / "empty")
    np.savez(tmp_path / "bad.npz", x_train=mnist.x_train[:10], y_train=mnist.y_train[:10])
    with pytest.raises(ValueError, match="lacks keys"):
        tdata.load_mnist(tmp_path / "bad.npz")
    y = mnist.y_test[:10].copy()
    y[3] = 11
    np.savez(tmp_path / "lab.npz", x_train=mnist.x_train[:10], y_train=mnist.y_train[:10],
             x_test=mnist.x_test[:10], y_test=y)
    with pytest.raises(ValueError, match="labels 0..9"):
        tdata.load_mnist(tmp_path / "lab.npz")


# ---------------------------------------------------------------------------- download


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def http_mirror(idx_dir):
    """A local HTTP server on 127.0.0.1 serving the gzipped IDX files (no real network)."""
    handler = functools.partial(_Quiet, directory=str(idx_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _md5s(directory: Path) -> dict:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in directory.glob("*.gz")}


def test_download_from_local_http_server(http_mirror, idx_dir, mnist, tmp_path):
    dead = "http://127.0.0.1:9/nothing/"  # first mirror fails (connection refused): falls back
    out = tdata.download_mnist(tmp_path / "dl", mirrors=[dead, http_mirror], md5=_md5s(idx_dir))
    assert _same(tdata.load_mnist(out), mnist)
    assert sorted(p.name for p in out.iterdir()) == sorted(n + ".gz" for n in tdata.IDX_FILES.values())


def test_download_file_url_and_bad_checksum(idx_dir, mnist, tmp_path):
    url = idx_dir.as_uri() + "/"
    out = tdata.download_mnist(tmp_path / "a", mirrors=[url], md5=None)
    assert _same(tdata.load_mnist(out), mnist)
    wrong = dict(_md5s(idx_dir), **{"train-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(ValueError, match="MD5"):
        tdata.download_mnist(tmp_path / "b", mirrors=[url], md5=wrong, check=False)
    assert not list((tmp_path / "b").glob("train-images*"))  # the bad file was removed
    with pytest.raises(OSError, match="could not download"):
        tdata.download_mnist(tmp_path / "c", mirrors=[(tmp_path / "nowhere").as_uri() + "/"], check=False)


def test_download_content_check_rejects_wrong_data(mnist, tmp_path):
    # A mirror serving well-formed but wrong data fails the content check even without MD5s.
    bad = mnist._replace(y_train=mnist.y_train[:-1], x_train=mnist.x_train[:-1])
    src = tdata.write_mnist_idx(bad, tmp_path / "src", compresslevel=1)
    with pytest.raises(ValueError, match="class counts|pixel"):
        tdata.download_mnist(tmp_path / "dst", mirrors=[src.as_uri() + "/"], md5=None)


def test_default_md5_table_is_the_published_one():
    # The gz files we write differ from the published ones (gzip headers), so the default
    # table is checked for form only; the published digests are those torchvision checks.
    assert set(tdata.IDX_GZ_MD5) == {n + ".gz" for n in tdata.IDX_FILES.values()}
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in tdata.IDX_GZ_MD5.values())


# ---------------------------------------------------------------------------- tensors


def test_to_tensors_layouts_and_normalisation(mnist):
    x, y = tdata.to_tensors(mnist.x_train[:100], mnist.y_train[:100], layout="flat", dtype=torch.float64)
    assert x.shape == (100, 784) and y.dtype == torch.int64
    expect = (mnist.x_train[:100].reshape(100, -1) / 255.0 - 0.1307) / 0.3081
    assert np.allclose(x.numpy(), expect, rtol=0, atol=1e-12)
    assert np.array_equal(y.numpy(), mnist.y_train[:100])
    xi, _ = tdata.to_tensors(mnist.x_test[:5], mnist.y_test[:5], layout="image")
    assert xi.shape == (5, 1, 28, 28) and xi.dtype == torch.float32
    xp, _ = tdata.to_tensors(mnist.x_test[:5], mnist.y_test[:5], layout="padded32x3")
    assert xp.shape == (5, 3, 32, 32)
    black = (0.0 - tdata.MNIST_MEAN) / tdata.MNIST_STD
    border = torch.cat([xp[..., :2, :].reshape(-1), xp[..., -2:, :].reshape(-1), xp[..., :, :2].reshape(-1)])
    assert torch.allclose(border, torch.full_like(border, black))
    assert torch.equal(xp[:, 0], xp[:, 1]) and torch.equal(xp[:, 0], xp[:, 2])
    assert torch.equal(xp[:, 0, 2:30, 2:30], xi[:, 0])
    raw, _ = tdata.to_tensors(mnist.x_test[:5], mnist.y_test[:5], normalize=False)
    assert float(raw.min()) >= 0 and float(raw.max()) <= 1
    with pytest.raises(ValueError, match="layout"):
        tdata.to_tensors(mnist.x_test[:5], mnist.y_test[:5], layout="nchw")


def test_permutation_and_subset():
    a = tdata.epoch_permutation(100, seed=3, epoch=0)
    assert torch.equal(a, tdata.epoch_permutation(100, seed=3, epoch=0))
    assert not torch.equal(a, tdata.epoch_permutation(100, seed=3, epoch=1))
    assert not torch.equal(a, tdata.epoch_permutation(100, seed=4, epoch=0))
    assert torch.equal(a.sort().values, torch.arange(100))
    assert torch.equal(tdata.subset_indices(10, None, None), torch.arange(10))
    assert torch.equal(tdata.subset_indices(10, 4, None), torch.arange(4))
    s = tdata.subset_indices(1000, 50, torch.Generator().manual_seed(0))
    assert len(torch.unique(s)) == 50
    with pytest.raises(ValueError, match="n=0 "):
        tdata.subset_indices(10, 0, None)


def test_gzip_written_deterministically(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    a = tdata.write_idx(tmp_path / "a.gz", arr).read_bytes()
    b = tdata.write_idx(tmp_path / "b.gz", arr).read_bytes()
    assert a == b and gzip.decompress(a)[4:8] == (10).to_bytes(4, "big")


# ---------------------------------------------------------------------------- one reader, one variable, seeds


def test_one_mnist_reader_for_both_packages(mnist, idx_dir):
    from refimpl import data as rdata  # noqa: PLC0415

    assert tdata.read_idx is rdata.read_idx and tdata.write_idx is rdata.write_idx
    assert tdata.IDX_FILES is rdata.IDX_NAMES
    d = rdata.load_mnist(idx_dir)
    assert all(np.array_equal(d[k], getattr(mnist, k)) for k in tdata.MNISTArrays._fields)


def test_one_environment_variable(mnist_path, monkeypatch, tmp_path):
    from refimpl import data as rdata  # noqa: PLC0415

    monkeypatch.delenv("QLANGEVIN_DATA", raising=False)
    monkeypatch.setenv("QLANGEVIN_MNIST", str(tmp_path / "nowhere.npz"))
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        tdata.load_mnist()
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        rdata.load_mnist()
    from torchport import train as tt  # noqa: PLC0415

    assert tt.default_data_dir() == str(tmp_path / "nowhere.npz")
    # the old variable of `qlangevin train` still works, with a deprecation warning
    monkeypatch.delenv("QLANGEVIN_MNIST")
    monkeypatch.setenv("QLANGEVIN_DATA", str(mnist_path))
    with pytest.warns(DeprecationWarning, match="QLANGEVIN_MNIST"):
        assert rdata.default_mnist_path() == mnist_path
    # QLANGEVIN_MNIST wins when both are set (no warning)
    monkeypatch.setenv("QLANGEVIN_MNIST", str(tmp_path / "x.npz"))
    assert rdata.default_mnist_path() == tmp_path / "x.npz"


def test_malformed_npz_files_are_clear_errors(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an npz archive"):
        tdata.load_mnist(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match="not a readable npz"):
        tdata.load_mnist(tmp_path / "junk.npz")
    np.savez(tmp_path / "f.npz", x_train=np.zeros((2, 28, 28), np.float32), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="x_train must be uint8"):
        tdata.load_mnist(tmp_path / "f.npz")


def test_subset_seed_is_an_int_or_a_generator():
    a = tdata.subset_indices(1000, 50, 7)
    b = tdata.subset_indices(1000, 50, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="seed="):
        tdata.subset_indices(1000, 50, "7")
    with pytest.raises(ValueError, match="n=2.5 "):
        tdata.subset_indices(10, 2.5, None)
    with pytest.raises(TypeError, match="seed=<torch"):
        tdata.epoch_permutation(10, torch.Generator(), 0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, y: tdata.to_tensors([[1]], y), TypeError, "uint8"),
    (lambda x, y: tdata.to_tensors(x[0], y), ValueError, r"shape \(n, 28, 28\)"),
    (lambda x, y: tdata.to_tensors(x.astype(np.float32), y), TypeError, "uint8"),
    (lambda x, y: tdata.to_tensors(x, np.zeros(5, np.uint8)), ValueError, "3 integers"),
    (lambda x, y: tdata.to_tensors(x, y, dtype="float32"), TypeError, "dtype='float32'"),
    (lambda x, y: tdata.subset_indices(-1, 3, None), ValueError, "n_total=-1"),
    (lambda x, y: tdata.epoch_permutation(-1, 0, 0), ValueError, "n=-1"),
    (lambda x, y: tdata.epoch_permutation("5", 0, 0), TypeError, "n='5'"),
    (lambda x, y: tdata.check_mnist({"x": 1}), ValueError, "lacks keys"),
    (lambda x, y: tdata.check_mnist(3), TypeError, "MNISTArrays"),
    (lambda x, y: tdata.download_mnist("unused", mirrors=["file:///x/"], timeout=-1), ValueError, "timeout=-1"),
    (lambda x, y: tdata.load_mnist(3), TypeError, "path=3"),
])
def test_bad_inputs_are_clear_errors(call, exc, match):
    x, y = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
    with pytest.raises(exc, match=match):
        call(x, y)

"""torchport.train and ``qlangevin train``: config checks, schedules, the loop, run directory, resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from torchport import train as tt
from torchport.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def tiny_npz(mnist_path, tmp_path_factory):
    """First 640 training and 300 test images of the real MNIST file (keeps the tests fast)."""
    with np.load(mnist_path) as z:
        arrays = {"x_train": z["x_train"][:640], "y_train": z["y_train"][:640],
                  "x_test": z["x_test"][:300], "y_test": z["y_test"][:300]}
    path = tmp_path_factory.mktemp("tiny") / "mnist.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _cfg(tiny_npz, **kw):
    base = dict(data_dir=tiny_npz, model="logreg", method="sgld", epochs=2, batch_size=32, num_samples=4,
                progress=False, seed=3)
    base.update(kw)
    return tt.TrainConfig(**base)


def _params(run_dir):
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    return ck["step"], {k: v for k, v in ck["model"].items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "adam"}, "method='adam'"),
        ({"model": "vgg"}, "model='vgg'"),
        ({"method": "sgld_vc"}, "weight_format=None"),
        ({"method": "sgld_vc", "weight_format": "fixed:8"}, "weight_format='fixed:8'"),
        ({"act_format": "bfp:x"}, "act_format='bfp:x'"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"temperature": float("nan")}, "temperature=nan"),
        ({"burn_in": 1.0}, "burn_in=1.0"),
        ({"batch_size": 30, "grad_shards": 4}, "batch_size=30"),
        ({"num_samples": 0}, "num_samples=0"),
        ({"schedule": "step"}, "schedule='step'"),
        ({"dataset": "cifar10"}, "dataset='cifar10'"),
        ({"method": "sgld", "weight_format": "fixed:8:6"}, "full precision"),
        ({"init_rounding": "zero"}, "init_rounding='zero'"),
    ],
)
def test_config_validation(tiny_npz, kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tiny_npz, **kw).validate()


def test_config_json_roundtrip(tiny_npz):
    c = _cfg(tiny_npz, method="sgld_lp_f", weight_format="fixed:8:6")
    assert tt.TrainConfig.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(ValueError, match="unknown fields"):
        tt.TrainConfig.from_json(dict(c.to_json(), colour="red"))


# ---------------------------------------------------------------------------- schedules


def test_collection_steps(tiny_npz):
    c = _cfg(tiny_npz, num_samples=5, burn_in=0.5)
    steps = tt.collection_steps(c, 100, 10)
    assert steps == [60, 70, 80, 90, 100]
    assert tt.collection_steps(dataclasses.replace(c, method="sgd"), 100, 10) == [100]
    assert tt.collection_steps(dataclasses.replace(c, num_samples=500), 100, 10) == list(range(51, 101))
    cyc = dataclasses.replace(c, schedule="cyclical", cycles=2, num_samples=4)
    # 2 cycles of 50 steps, 10 steps per epoch, 2 samples per cycle: ends of each cycle's last 2 epochs
    assert tt.collection_steps(cyc, 100, 10) == [40, 50, 90, 100]


def test_lr_factor(tiny_npz):
    c = _cfg(tiny_npz)
    assert tt.lr_factor(c, 7, 10, 100) == 1.0
    d = dataclasses.replace(c, schedule="decay")
    assert [tt.lr_factor(d, k * 10, 10, 100) for k in (0, 5, 7, 9)] == pytest.approx(
        [1.0, 1.0, 1 - 0.99 * 0.2 / 0.4, 0.01])
    cy = dataclasses.replace(c, schedule="cyclical", cycles=2)
    assert tt.lr_factor(cy, 0, 10, 100) == 1.0 and tt.lr_factor(cy, 50, 10, 100) == 1.0
    assert tt.lr_factor(cy, 25, 10, 100) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("wrong_num_data", [False, True])
def test_driver_noise_scale_is_two_lr_T_over_N(tiny_npz, wrong_num_data):
    """The driver builds the sampler with num_data = N (training examples), so one step with a
    zero gradient and no prior adds noise of variance V = 2·lr·T/N per coordinate (S0).
    With d = 7850 coordinates the sample variance has relative standard error √(2/d) = 1.6 %;
    we allow 5 standard errors (8 %).  The mutation (num_data = 1, the textbook scaling applied
    to a mean loss) inflates V by N = 640 and must be rejected."""
    c = _cfg(tiny_npz, lr=0.3, temperature=2.0, weight_decay=0.0)
    model = torch.nn.Linear(784, 10)
    n_data = 1 if wrong_num_data else 640
    opt = tt.build_optimizer(c, list(model.parameters()), num_data=n_data)
    assert opt.param_groups[0]["num_data"] == n_data and opt.param_groups[0]["lr"] == 0.3
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()]).double()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    v_hat = float((after - before).var())
    v = 2 * 0.3 * 2.0 / 640
    ok = abs(v_hat / v - 1) < 5 * math.sqrt(2 / before.numel())
    assert ok != wrong_num_data


# ---------------------------------------------------------------------------- the loop


ALL_METHODS = [
    ("torch_sgd", None), ("sgd", None), ("sgld", None), ("sgd_lp_f", "fixed:8:6"), ("sgd_lp_l", "fixed:8:6"),
    ("sgld_lp_f", "fixed:8:6"), ("sgld_lp_l", "fixed:8:4"), ("sgld_vc", "fixed:8:2"), ("sgld_vc", "bfp:8:0"),
    ("sghmc", None), ("sghmc_lp_f", "fixed:8:6"), ("sghmc_lp_l", "fixed:8:6"), ("sghmc_vc", "fixed:8:6"),
    ("qsgld", None), ("ctld", None), ("askewsgd", None), ("binaryconnect", None), ("proxquant", None),
]


def test_every_optimizer_of_the_package_has_a_method():
    import torchport.optim as topt  # noqa: PLC0415

    offered = {cls for cls, _ in tt.METHODS.values()}
    classes = {n for n in topt.__all__ if isinstance(getattr(topt, n), type)
               and issubclass(getattr(topt, n), torch.optim.Optimizer) and n != "NoisyOptimizer"}
    assert classes <= offered, classes - offered
    assert {m for m, _ in ALL_METHODS} == set(tt.METHODS)


@pytest.mark.parametrize("method, fmt", ALL_METHODS)
def test_every_method_runs_and_writes_a_run_directory(tiny_npz, tmp_path, method, fmt):
    c = _cfg(tiny_npz, method=method, weight_format=fmt, epochs=1)
    result = tt.train(c, tmp_path / "run")
    assert result["step"] == result["total_steps"] == 640 // 32
    noise_free = method in tt.NOISE_FREE
    # CTLD keeps a sample only inside its target band g(α) = 1; the others are counted
    assert result["num_samples"] + result.get("skipped_samples", 0) == (1 if noise_free else 4)
    assert result["num_samples"] >= 1 or method == "ctld"
    for key in ("bma", "last") if result["num_samples"] else ("last",):
        assert set(result[key]) == {"error", "nll", "ece15", "ece9_published"}
        assert 0 <= result[key]["error"] <= 100 and math.isfinite(result[key]["nll"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["bma"] == (pytest.approx(result["bma"]) if result["bma"] else None)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"] == c.to_json()
    assert len(list((tmp_path / "run" / "samples").glob("sample_*.pt"))) == result["num_samples"]
    if fmt and fmt.startswith("fixed") and method in ("sgld_lp_l", "sgld_vc", "sgd_lp_l"):
        # low-precision accumulator: the stored weights lie on the fixed-point grid
        delta = 2.0 ** -int(fmt.split(":")[2])
        _, params = _params(tmp_path / "run")
        for v in params.values():
            assert torch.equal(torch.round(v.double() / delta) * delta, v.double())


def test_activation_quantizers_are_inserted_and_resume(tiny_npz, tmp_path):
    c = _cfg(tiny_npz, model="mlp", method="sgld_lp_f", weight_format="bfp:8:0", act_format="bfp:8:0",
             epochs=1)
    straight = tt.train(c, tmp_path / "a")
    tt.train(dataclasses.replace(c, max_steps=7), tmp_path / "b")
    resumed = tt.train(c, tmp_path / "b", resume=True)
    sa, pa = _params(tmp_path / "a")
    sb, pb = _params(tmp_path / "b")
    assert sa == sb == 20 and pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert resumed["bma"] == straight["bma"]
    from torchport.nn import quantizers_of  # noqa: PLC0415

    holder = {}
    tt.train(dataclasses.replace(c, max_steps=1), None, _model_out=holder)
    assert len(quantizers_of(holder["model"])) == 2  # after layer1 and after its ReLU


@pytest.mark.parametrize("init_rounding", ["optimizer", "stochastic"])
def test_init_rounding_of_low_precision_weights(tiny_npz, init_rounding):
    """LP-L at fixed:8:2 (Δ = 1/4) on the MLP.  The optimizer's nearest rounding maps every
    initial weight (|w| ≤ 1/28 < Δ/2) to 0: a dead ReLU network that noise-free SGDLP-L never
    leaves.  With ``init_rounding="stochastic"`` P(w ≠ 0) = E|w|/Δ = (1/56)/(1/4) = 1/14 for
    w ~ U(±1/28); over n = 78400 weights the binomial standard error is
    √(p(1−p)/n) = 9.2e-4, and we allow 5 of them."""
    holder = {}
    tt.train(_cfg(tiny_npz, model="mlp", method="sgd_lp_l", weight_format="fixed:8:2", max_steps=0,
                  init_rounding=init_rounding), None, _model_out=holder)
    frac = float((holder["model"].layer1.weight != 0).double().mean())
    if init_rounding == "optimizer":
        assert frac == 0.0
    else:
        p = 1 / 14
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / 78400)


def test_float64_runs_in_float64(tiny_npz):
    holder = {}
    r = tt.train(_cfg(tiny_npz, method="sgld_lp_f", weight_format="fixed:8:6", dtype="float64", max_steps=5),
                 None, _model_out=holder)
    assert r["step"] == 5 and all(p.dtype == torch.float64 for p in holder["model"].parameters())


def test_learning_happens(tiny_npz):
    """Sanity: SGD on 640 examples for 5 epochs beats chance (90 % error) by far on the test images."""
    r = tt.train(_cfg(tiny_npz, method="sgd", epochs=5), None)
    assert r["last"]["error"] < 30.0


# ---------------------------------------------------------------------------- resume


@pytest.mark.parametrize("method, fmt", [("sgld_vc", "fixed:8:4"), ("sghmc_lp_f", "fixed:8:6"), ("sgld", None),
                                         ("qsgld", None), ("ctld", None), ("askewsgd", None)])
def test_resume_is_bit_for_bit(tiny_npz, tmp_path, method, fmt):
    """N steps straight == N/2 steps, save, resume N/2 (checkpoint includes the generator)."""
    c = _cfg(tiny_npz, method=method, weight_format=fmt)  # 40 steps, samples at 25, 30, 35, 40
    straight = tt.train(c, tmp_path / "a")
    tt.train(dataclasses.replace(c, max_steps=20), tmp_path / "b")
    assert _params(tmp_path / "b")[0] == 20
    resumed = tt.train(c, tmp_path / "b", resume=True)
    (sa, pa), (sb, pb) = _params(tmp_path / "a"), _params(tmp_path / "b")
    assert sa == sb == 40 and all(torch.equal(pa[k], pb[k]) for k in pa)
    n = straight["num_samples"]
    assert resumed["bma"] == straight["bma"] and resumed["num_samples"] == n
    assert n == (1 if method in tt.NOISE_FREE else 4 - straight.get("skipped_samples", 0))
    assert resumed["history"] == straight["history"]
    for i in range(n):  # the collected samples themselves are identical
        a = load_checkpoint(tmp_path / "a" / "samples" / f"sample_{i:04d}.pt")["model"]
        b = load_checkpoint(tmp_path / "b" / "samples" / f"sample_{i:04d}.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_detects_a_lost_generator_state(tiny_npz, tmp_path):
    """Mutation for the resume test: a checkpoint whose optimizer generator was reseeded
    (what a driver that forgot the generator would do) must NOT reproduce the straight run."""
    c = _cfg(tiny_npz, method="sgld")
    tt.train(c, tmp_path / "a")
    tt.train(dataclasses.replace(c, max_steps=20), tmp_path / "b")
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    ck["optimizer"]["generator_state"] = torch.Generator().manual_seed(tt.derived_seed(c.seed, 1)).get_state()
    save_checkpoint(ck, tmp_path / "b" / "checkpoint.pt")
    tt.train(c, tmp_path / "b", resume=True)
    pa, pb = _params(tmp_path / "a")[1], _params(tmp_path / "b")[1]
    assert not all(torch.equal(pa[k], pb[k]) for k in pa)


def test_resume_and_run_dir_errors(tiny_npz, tmp_path):
    c = _cfg(tiny_npz, max_steps=3)
    tt.train(c, tmp_path / "a")
    with pytest.raises(FileExistsError):
        tt.train(c, tmp_path / "a")
    with pytest.raises(ValueError, match="lr"):
        tt.train(dataclasses.replace(c, lr=0.1), tmp_path / "a", resume=True)
    with pytest.raises(FileNotFoundError, match="config.json"):
        tt.train(c, tmp_path / "nothing", resume=True)


# ---------------------------------------------------------------------------- CLI


def test_cli_train_and_resume(tiny_npz, tmp_path, capsys):
    from qlangevin.cli import main  # noqa: PLC0415

    common = ["train", "--data-dir", tiny_npz, "--model", "logreg", "--method", "sgld_lp_l", "--format",
              "fixed:8:6", "--epochs", "1", "--batch-size", "32", "--seed", "5", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--max-steps", "9"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "run directory" in out
    pa, pb = _params(tmp_path / "a")[1], _params(tmp_path / "b")[1]
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert main(["train", "--data-dir", tiny_npz, "--method", "sgld_vc", "--format", "fixed:8"]) == 2
    assert "fixed:8" in capsys.readouterr().err

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
        ({"exact": "yes"}, "exact='yes'"),
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


@pytest.mark.parametrize("exact", [False, True])
def test_activation_quantizers_are_inserted_and_resume(tiny_npz, tmp_path, exact):
    c = _cfg(tiny_npz, model="mlp", method="sgld_lp_f", weight_format="bfp:8:0", act_format="bfp:8:0",
             epochs=1, exact=exact)
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
    assert all(q.exact is exact for q in quantizers_of(holder["model"]))  # the run's path


def test_old_run_with_exact_quantizers_resumes_on_them(tiny_npz, tmp_path, monkeypatch):
    """A run started before torchport.nn.Quantizer had a default path: optimizer on the default
    path ("exact": false), activation quantizers on the exact path.  It resumes with exact
    quantizers (read from the checkpoint's model state) and equals the straight old-style run."""
    c = _cfg(tiny_npz, model="mlp", method="sgld_lp_f", weight_format="bfp:8:0", act_format="bfp:8:0",
             epochs=1)
    new_wrap = tt.wrap_activation_quantizers
    with monkeypatch.context() as m:  # the code of before: quantizers always exact
        m.setattr(tt, "wrap_activation_quantizers", lambda model, config, gen, exact=None: new_wrap(
            model, config, gen, True))
        straight = tt.train(c, tmp_path / "a")
        tt.train(dataclasses.replace(c, max_steps=7), tmp_path / "b")
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert tt.checkpoint_quantizers_exact(ck) is True and tt.checkpoint_path_exact(ck) is False
    resumed = tt.train(c, tmp_path / "b", resume=True)
    _, pa = _params(tmp_path / "a")
    _, pb = _params(tmp_path / "b")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert resumed["bma"] == straight["bma"]
    # a new run of the same config uses default-path quantizers: other numbers
    fresh = tt.train(c, tmp_path / "c")
    assert tt.checkpoint_quantizers_exact(load_checkpoint(tmp_path / "c" / "checkpoint.pt")) is False
    assert fresh["bma"] != straight["bma"]


@pytest.mark.parametrize("init_rounding,exact", [("optimizer", False), ("stochastic", False),
                                                 ("stochastic", True)])
def test_init_rounding_of_low_precision_weights(tiny_npz, init_rounding, exact):
    """LP-L at fixed:8:2 (Δ = 1/4) on the MLP.  The optimizer's nearest rounding maps every
    initial weight (|w| ≤ 1/28 < Δ/2) to 0: a dead ReLU network that noise-free SGDLP-L never
    leaves.  With ``init_rounding="stochastic"`` P(w ≠ 0) = E|w|/Δ = (1/56)/(1/4) = 1/14 for
    w ~ U(±1/28); over n = 78400 weights the binomial standard error is
    √(p(1−p)/n) = 9.2e-4, and we allow 5 of them."""
    holder = {}
    tt.train(_cfg(tiny_npz, model="mlp", method="sgd_lp_l", weight_format="fixed:8:2", max_steps=0,
                  init_rounding=init_rounding, exact=exact), None, _model_out=holder)
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


@pytest.mark.parametrize("method, fmt, exact", [
    ("sgld_vc", "fixed:8:4", False), ("sghmc_lp_f", "fixed:8:6", False), ("sgld", None, False),
    ("sgld_vc", "fixed:8:4", True), ("sghmc_lp_f", "fixed:8:6", True), ("sgld", None, True),
    ("qsgld", None, False), ("ctld", None, False), ("askewsgd", None, False)])
def test_resume_is_bit_for_bit(tiny_npz, tmp_path, method, fmt, exact):
    """N steps straight == N/2 steps, save, resume N/2 (checkpoint includes the generator state, or on the
    default path the counter seed and step count)."""
    c = _cfg(tiny_npz, method=method, weight_format=fmt, exact=exact)  # 40 steps, samples at 25, 30, 35, 40
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


@pytest.mark.parametrize("exact", [True, False])
def test_resume_detects_a_lost_generator_state(tiny_npz, tmp_path, exact):
    """Mutation for the resume test: a checkpoint whose optimizer generator was reseeded
    (what a driver that forgot the generator would do) -- on the default path, whose step
    count was reset -- must NOT reproduce the straight run."""
    c = _cfg(tiny_npz, method="sgld", exact=exact)
    tt.train(c, tmp_path / "a")
    tt.train(dataclasses.replace(c, max_steps=20), tmp_path / "b")
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    if exact:
        ck["optimizer"]["generator_state"] = torch.Generator().manual_seed(tt.derived_seed(c.seed, 1)).get_state()
    else:
        ck["optimizer"]["num_steps"] = 0
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


def test_cli_exact_selects_the_exact_path_and_old_configs_read_as_exact(tiny_npz, tmp_path, capsys):
    """--exact gives a run with exact=True (a generator in its checkpoint) whose numbers differ from the default
    path's; --resume keeps the run's path.  A config.json written before the field existed (no "exact") reads
    as exact=True: those runs were made by the exact path, and resume on it."""
    from qlangevin.cli import main  # noqa: PLC0415

    common = ["train", "--data-dir", tiny_npz, "--model", "logreg", "--method", "sgld_vc", "--format",
              "fixed:8:6", "--epochs", "1", "--batch-size", "32", "--seed", "5", "--no-progress"]
    assert main(common + ["--exact", "--out", str(tmp_path / "e")]) == 0
    assert main(common + ["--out", str(tmp_path / "f")]) == 0
    assert json.loads((tmp_path / "e" / "config.json").read_text())["config"]["exact"] is True
    ck_e, ck_f = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("e", "f"))
    assert "generator_state" in ck_e["optimizer"] and "counter_seed" in ck_f["optimizer"]
    pe, pf = _params(tmp_path / "e")[1], _params(tmp_path / "f")[1]
    assert not all(torch.equal(pe[k], pf[k]) for k in pe)
    assert main(["train", "--resume", str(tmp_path / "e"), "--exact", "--no-progress"]) == 2
    assert "--exact: cannot be changed" in capsys.readouterr().err
    # an old run: config.json and the checkpoint's config without "exact", stopped at step 9
    assert main(common + ["--exact", "--out", str(tmp_path / "old"), "--max-steps", "9"]) == 0
    cfg_path = tmp_path / "old" / "config.json"
    saved = json.loads(cfg_path.read_text())
    del saved["config"]["exact"]
    cfg_path.write_text(json.dumps(saved))
    ck = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    del ck["config"]["exact"]
    save_checkpoint(ck, tmp_path / "old" / "checkpoint.pt")
    assert tt.load_config(tmp_path / "old").exact is True
    assert main(["train", "--resume", str(tmp_path / "old"), "--no-progress"]) == 0
    po = _params(tmp_path / "old")[1]
    assert all(torch.equal(po[k], pe[k]) for k in pe)


@pytest.mark.parametrize("method, fmt", [("sgld_vc", "fixed:8:6"), ("qsgld", None)])
def test_resume_follows_the_checkpoints_path_not_config_json(tiny_npz, tmp_path, method, fmt):
    """A run made before its optimizer had a fast path (QSGLD, CTLD, AskewSGD, BinaryConnect, ProxQuant) saved
    "exact": false (the default) in config.json and in its checkpoint's config, but its optimizer state is the
    exact path's (generator_state).  Built here as a run with exact=True whose two configs are then set to false.
    --resume must continue it on the exact path -- bit for bit the straight exact run -- and correct config.json."""
    from qlangevin.cli import main  # noqa: PLC0415

    c = _cfg(tiny_npz, method=method, weight_format=fmt, exact=True, epochs=1)
    tt.train(c, tmp_path / "straight")
    tt.train(dataclasses.replace(c, max_steps=9), tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    saved = json.loads(cfg_path.read_text())
    saved["config"]["exact"] = False
    cfg_path.write_text(json.dumps(saved))
    ck = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    assert "generator_state" in ck["optimizer"]
    ck["config"]["exact"] = False
    save_checkpoint(ck, tmp_path / "old" / "checkpoint.pt")
    assert tt.load_config(tmp_path / "old").exact is False and tt.checkpoint_path_exact(ck) is True
    assert main(["train", "--resume", str(tmp_path / "old"), "--no-progress"]) == 0
    (sa, pa), (sb, pb) = _params(tmp_path / "straight"), _params(tmp_path / "old")
    assert sa == sb and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert json.loads(cfg_path.read_text())["config"]["exact"] is True  # corrected on disk
    assert "generator_state" in load_checkpoint(tmp_path / "old" / "checkpoint.pt")["optimizer"]


def test_resume_still_refuses_a_path_change_the_run_did_not_make(tiny_npz, tmp_path):
    """Only an old run (config.json and checkpoint disagreeing) is corrected: asking to resume a consistent
    default-path run on the exact path is still refused by name."""
    c = _cfg(tiny_npz, method="sgld_vc", weight_format="fixed:8:6", max_steps=5)
    tt.train(c, tmp_path / "a")
    assert tt.checkpoint_path_exact(load_checkpoint(tmp_path / "a" / "checkpoint.pt")) is False
    with pytest.raises(ValueError, match="exact"):
        tt.train(dataclasses.replace(c, exact=True), tmp_path / "a", resume=True)
    assert tt.checkpoint_path_exact({"optimizer": {"state": {}}}) is None
    assert tt.checkpoint_path_exact("not a checkpoint") is None


# ---------------------------------------------------------------------------- scaling of QSGLD and CTLD


@pytest.mark.parametrize("method", ["qsgld", "ctld"])
@pytest.mark.parametrize("wrong_num_data", [False, True])
def test_qsgld_and_ctld_noise_scale_follow_the_contract(tiny_npz, method, wrong_num_data):
    """One step from zero gradient and zero prior.

    * QSGLD (stochastic rounding, temperature T/N): grid spacing Δ = √(12·lr·T/N); a weight at
      fractional position f moves by (1−f)Δ w.p. f and by −fΔ otherwise, so
      E[(Δθ)²] = f(1−f)Δ² exactly (2·lr·T/N on average over f ~ U(0, 1)).
    * CTLD (U units: η = lr/N, v₀ = 0): Δθ = √(2·c_θ·η·T)·ξ, variance 2·c_θ·lr·T/N.

    Mean of (Δθ)² over d = 7850 weights against its expectation, 5 standard errors (the
    per-weight spread of (Δθ)² divided by √d).  Mutation: num_data = 1 (the driver forgetting
    N) scales the variance by N = 640 and must be rejected."""
    c = _cfg(tiny_npz, method=method, lr=0.3, temperature=2.0, weight_decay=0.0)
    model = torch.nn.Linear(784, 10).double()
    n_data = 1 if wrong_num_data else 640
    opt = tt.build_optimizer(c, list(model.parameters()), num_data=n_data)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step(potential=0.0) if method == "ctld" else opt.step()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sq = (after - before) ** 2
    if method == "qsgld":
        delta = math.sqrt(12 * 0.3 * 2.0 / 640)
        f = torch.remainder(before / delta, 1.0)
        expected = float((f * (1 - f)).mean()) * delta**2
    else:
        expected = 2 * 0.1 * 0.3 * 2.0 / 640
    se = float(sq.std()) / math.sqrt(sq.numel())
    ok = abs(float(sq.mean()) - expected) < 5 * se
    assert ok != wrong_num_data


def test_ctld_gets_the_potential_and_gradient_in_U_units(tiny_npz, monkeypatch):
    """The driver passes CTLD the potential N·(L + wd/2·‖θ‖²) and the gradient N·(∇L + wd·θ)."""
    from torchport.optim import CTLD  # noqa: PLC0415

    seen = {}
    orig = CTLD.step

    def spy(self, closure=None, *, noise=None, potential=None):
        if "potential" not in seen:
            seen["potential"] = potential
            seen["grad"] = [p.grad.clone() for p in self.param_groups[0]["params"]]
            seen["theta"] = [p.detach().clone() for p in self.param_groups[0]["params"]]
        return orig(self, closure, noise=noise, potential=potential)

    monkeypatch.setattr(CTLD, "step", spy)
    c = _cfg(tiny_npz, method="ctld", max_steps=1, weight_decay=0.01, dtype="float64")
    tt.train(c, None)
    # recompute the first minibatch's loss and gradient by hand
    ds = tt.load_dataset(c, torch.device("cpu"))
    model = tt.tmodels.build_model("logreg", seed=tt.derived_seed(c.seed, tt.STREAM_INIT), dtype=torch.float64)
    perm = tt.tdata.epoch_permutation(640, tt.derived_seed(c.seed, tt.STREAM_DATA), 0)[:32]
    loss = torch.nn.functional.cross_entropy(model(ds.x_train[perm]), ds.y_train[perm])
    loss.backward()
    sq = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
    assert seen["potential"] == pytest.approx(640 * (float(loss.detach()) + 0.005 * sq), rel=1e-12)
    for g, p, t in zip(seen["grad"], model.parameters(), seen["theta"]):
        assert torch.allclose(g, 640 * (p.grad + 0.01 * t), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- checkpoints, locks, signals


def test_checkpoint_every_epoch_by_default(tiny_npz, tmp_path, monkeypatch):
    steps = []
    real = tt.save_checkpoint

    def spy(obj, path):
        if path.name == tt.CHECKPOINT_NAME:
            steps.append(obj["step"])
        return real(obj, path)

    monkeypatch.setattr(tt, "save_checkpoint", spy)
    tt.train(_cfg(tiny_npz, epochs=3), tmp_path / "a")  # 20 steps per epoch
    assert steps == [0, 20, 40, 60]
    steps.clear()
    tt.train(_cfg(tiny_npz, epochs=3, checkpoint_every=0), tmp_path / "b")
    assert steps == [0, 60]
    steps.clear()
    tt.train(_cfg(tiny_npz, epochs=1, checkpoint_every=7), tmp_path / "c")
    assert steps == [0, 7, 14, 20]


def test_resume_refuses_corrupted_or_planted_checkpoints(tiny_npz, tmp_path):
    c = _cfg(tiny_npz, max_steps=5)
    tt.train(c, tmp_path / "a")
    ck = tmp_path / "a" / "checkpoint.pt"
    good = ck.read_bytes()
    data = bytearray(good)
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    ck.write_bytes(bytes(data))
    with pytest.raises(tt.CheckpointError, match="checksum"):
        tt.train(c, tmp_path / "a", resume=True)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"step": 1, "model": Evil()}, ck)
    with pytest.raises(tt.CheckpointError, match="not a qlangevin checkpoint"):
        tt.train(c, tmp_path / "a", resume=True)
    from torchport.checkpoint import encode  # noqa: PLC0415

    ck.write_bytes(encode({"step": 1, "model": Evil()}))
    with pytest.raises(tt.CheckpointError, match="plain data"):
        tt.train(c, tmp_path / "a", resume=True)
    assert not marker.exists()
    # a checkpoint of another run dropped into this directory
    tt.train(dataclasses.replace(c, seed=4), tmp_path / "other")
    ck.write_bytes((tmp_path / "other" / "checkpoint.pt").read_bytes())
    with pytest.raises(tt.CheckpointError, match="another configuration"):
        tt.train(c, tmp_path / "a", resume=True)
    ck.write_bytes(good)
    assert tt.train(c, tmp_path / "a", resume=True)["step"] == 5


def test_run_directory_links_are_refused(tiny_npz, tmp_path):
    c = _cfg(tiny_npz, max_steps=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        tt.train(c, tmp_path / "link")
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        tt.train(c, run)
    assert sorted(p.name for p in run.iterdir()) == ["samples"]  # nothing written
    (run / "samples").unlink()
    # the old fixed temporary name planted as a link: ignored, nothing written outside
    (run / "checkpoint.pt.tmp").symlink_to(outside / "victim")
    tt.train(c, run)
    assert list(outside.iterdir()) == [] and not (run / ".lock").exists()


_HOLD_LOCK = """
import sys, time
from torchport._io import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_second_writer_is_refused_naming_the_holder(tiny_npz, tmp_path, capsys):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from qlangevin.cli import main  # noqa: PLC0415

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=f"in use by another qlangevin train \\(pid {holder.pid}"):
            tt.train(_cfg(tiny_npz, max_steps=2), run)
        assert main(["train", "--data-dir", tiny_npz, "--model", "logreg", "--max-steps", "2", "--no-progress",
                     "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and err.count("\n") == 1 and "Traceback" not in err
        assert not (run / "config.json").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its stale lock is taken over
    assert tt.train(_cfg(tiny_npz, max_steps=2), run)["step"] == 2


_CHILD = """
import sys
from qlangevin.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_writes_a_checkpoint_and_resume_is_bit_for_bit(tiny_npz, tmp_path, signame):
    """A real signal to a ``qlangevin train`` subprocess: it finishes the step, writes a checkpoint,
    prints how to resume and exits 128 + signum; resuming to step K gives the bits of a straight
    run of K steps.  The signal is sent once the periodic checkpoint of step 50 exists; the
    checkpoint it leaves is of a later step (not a multiple of 50 in general)."""
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    run = tmp_path / "run"
    args = ["train", "--data-dir", tiny_npz, "--model", "logreg", "--method", "sgld", "--epochs", "5000",
            "--batch-size", "32", "--num-samples", "4", "--seed", "3", "--no-progress", "--checkpoint-every", "50",
            "--threads", "1", "--out", str(run)]
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists() or load_checkpoint(run / "checkpoint.pt")["step"] == 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)  # the periodic checkpoint of step 50 exists: inside the step loop
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    signum = int(getattr(signal, signame))
    assert proc.returncode == 128 + signum, err
    assert f"resume with: qlangevin train --resume {run}" in err and "Traceback" not in err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert f"at step {step}/100000" in err
    assert 50 <= step < 100000 and not (run / ".lock").exists()
    target = step + 7
    from qlangevin.cli import main  # noqa: PLC0415

    assert main(["train", "--resume", str(run), "--max-steps", str(target), "--no-progress"]) == 0
    straight = _cfg(tiny_npz, epochs=5000, max_steps=target, checkpoint_every=0)
    tt.train(straight, tmp_path / "straight")
    (sa, pa), (sb, pb) = _params(tmp_path / "straight"), _params(run)
    assert sa == sb == target and all(torch.equal(pa[k], pb[k]) for k in pa)


# ---------------------------------------------------------------------------- bad inputs


BAD_CONFIGS = [
    ({"epochs": "2"}, "epochs='2'"), ({"epochs": float("inf")}, "epochs=inf"), ({"epochs": 0}, "epochs=0"),
    ({"batch_size": True}, "batch_size=True"), ({"batch_size": 2.5}, "batch_size=2.5"),
    ({"lr": float("nan")}, "lr=nan"), ({"lr": "0.1"}, "lr='0.1'"), ({"friction": 0}, "friction=0"),
    ({"level_scale": -1.0}, "level_scale=-1.0"), ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
    ({"seed": -1}, "seed=-1"), ({"seed": 1.5}, "seed=1.5"), ({"seed": torch.Generator()}, "seed=<torch"),
    ({"subset": 0}, "subset=0"), ({"subset": 70000}, "subset=70000"), ({"max_steps": -1}, "max_steps=-1"),
    ({"max_steps": 2.0}, "max_steps=2.0"), ({"checkpoint_every": -5}, "checkpoint_every=-5"),
    ({"device": "gpu9"}, "device='gpu9'"), ({"dtype": "float16"}, "dtype='float16'"),
    ({"model": None}, "model=None"), ({"data_dir": 3}, "data_dir=3"), ({"progress": "yes"}, "progress='yes'"),
    ({"burn_in": -0.1}, "burn_in=-0.1"), ({"cycles": 0}, "cycles=0"), ({"grad_format": "bogus"}, "grad_format"),
    ({"method": "qsgld", "temperature": 0.0}, "temperature=0.0"),
    ({"method": "askewsgd", "weight_format": "fixed:8:6"}, "weight_format='fixed:8:6'"),
    ({"method": "ctld", "grad_format": "fixed:8:6"}, "grad_format='fixed:8:6'"),
]
if not torch.cuda.is_available():
    BAD_CONFIGS.append(({"device": "cuda"}, "device='cuda': CUDA is not available"))


@pytest.mark.parametrize("kw, match", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_bad_config_values_name_the_field(tiny_npz, kw, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        _cfg(tiny_npz, **kw).validate()


def test_bad_train_arguments(tiny_npz, tmp_path):
    with pytest.raises(TypeError, match="TrainConfig"):
        tt.train({"lr": 0.1}, None)
    with pytest.raises(ValueError, match="resume=True needs run_dir"):
        tt.train(_cfg(tiny_npz), None, resume=True)
    with pytest.raises(ValueError, match="rank=2"):
        tt.train(_cfg(tiny_npz), None, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size=640000"):
        tt.train(_cfg(tiny_npz, batch_size=640000), None)
    # a new run that fails before writing anything leaves no directory behind
    with pytest.raises(FileNotFoundError):
        tt.train(_cfg(tiny_npz, data_dir=str(tmp_path / "missing.npz")), tmp_path / "new" / "run")
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid run configuration"):
        tt.load_config(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text('{"other": 1}')
    with pytest.raises(ValueError, match="not a valid run configuration"):
        tt.load_config(tmp_path / "bad")


def _cli_bad_cases(tiny_npz, tmp_path):
    base = ["train", "--data-dir", tiny_npz, "--model", "logreg", "--no-progress", "--max-steps", "2"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    return [
        (base + ["--lr", "nan"], "nan"), (base + ["--lr", "-1"], "lr=-1.0"), (base + ["--epochs", "0"], "epochs=0"),
        (base + ["--method", "nope"], "nope"), (base + ["--format", "bogus", "--method", "sgld_vc"], "bogus"),
        (base + ["--batch-size", "0"], "batch_size=0"), (base + ["--seed", "-1"], "seed=-1"),
        (base + ["--subset", "0"], "subset=0"), (base + ["--threads", "0"], "--threads=0"),
        (base + ["--device", "gpu9"], "gpu9"), (base + ["--checkpoint-every", "-1"], "checkpoint_every=-1"),
        (base + ["--level-scale", "0", "--method", "proxquant"], "level_scale=0.0"),
        (["train", "--data-dir", str(tmp_path / "none"), "--no-progress", "--out", str(tmp_path / "o1")],
         "no such file"),
        (base + ["--out", str(afile)], "afile"),
        (["train", "--resume", str(tmp_path / "nothing")], "config.json"),
        (["train", "--download", "--no-progress", "--out", str(tmp_path / "o2")], "--download needs --data-dir"),
    ]


def test_cli_bad_inputs_are_one_line_exit_2(tiny_npz, tmp_path, capsys):
    from qlangevin.cli import main  # noqa: PLC0415

    cases = _cli_bad_cases(tiny_npz, tmp_path)
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    # resume: a corrupted checkpoint, and options that the saved config fixes
    run = tmp_path / "run"
    assert main(["train", "--data-dir", tiny_npz, "--model", "logreg", "--no-progress", "--max-steps", "3",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.2", "--no-progress"]) == 2
    assert "--lr: cannot be changed when resuming" in capsys.readouterr().err
    data = bytearray((run / "checkpoint.pt").read_bytes())
    data[-64:] = bytes(64)
    (run / "checkpoint.pt").write_bytes(bytes(data))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and err.count("\n") == 1


def test_cli_without_torch_says_how_to_install(tmp_path):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = ("import sys; sys.modules['torch'] = None\n"
            "from qlangevin.cli import main\n"
            "sys.exit(main(['train', '--out', sys.argv[1]]))")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().endswith('pip install "qlangevin[torch]"') and p.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- optimizer options


def test_optimizer_options_reach_the_optimizer(tiny_npz):
    c = _cfg(tiny_npz, method="ctld", optimizer_options={"eta_alpha": 1e-6, "n_bins": 20})
    opt = tt.build_optimizer(c.validate(), list(torch.nn.Linear(3, 2).parameters()), num_data=640)
    assert opt.o["eta_alpha"] == 1e-6 and opt.o["n_bins"] == 20
    c = _cfg(tiny_npz, method="proxquant", optimizer_options={"lambda_rate": 1e-6})
    assert tt.build_optimizer(c.validate(), list(torch.nn.Linear(3, 2).parameters()), 640).lambda_rate == 1e-6
    c = _cfg(tiny_npz, method="qsgld", optimizer_options={"rounding": "surrogate"})  # overrides the method's
    assert tt.build_optimizer(c.validate(), list(torch.nn.Linear(3, 2).parameters()), 640).defaults["lr"] == 0.05
    c = _cfg(tiny_npz, method="torch_sgd", optimizer_options={"momentum": 0.9})
    assert tt.build_optimizer(c.validate(), list(torch.nn.Linear(3, 2).parameters()), 640).defaults["momentum"] == 0.9


@pytest.mark.parametrize("method, opts, match", [
    ("sgld", {"lr": 0.1}, "'lr' is set by the driver"),
    ("sgld", {"seed": 1}, "'seed' is set by the driver"),
    ("sgld", {"exact": True}, "'exact' is set by the driver"),
    ("sgld", {"bogus": 1}, r"does not accept \['bogus'\]"),
    ("ctld", {"bogus": 1}, "unknown CTLD options"),
    ("torch_sgd", {"bogus": 1}, "bogus"),
    ("sgld", {"add_noise": [1]}, "must be a number"),
    ("sgld", {"1x": 1}, "not an identifier"),
    ("ctld", {"eta_alpha": float("nan")}, "must be finite"),
])
def test_bad_optimizer_options(tiny_npz, method, opts, match):
    c = _cfg(tiny_npz, method=method, optimizer_options=opts)
    with pytest.raises(ValueError, match=match):
        tt.build_optimizer(c.validate(), list(torch.nn.Linear(3, 2).parameters()), num_data=640)


def test_cli_opt(tiny_npz, tmp_path, capsys):
    from qlangevin.cli import main  # noqa: PLC0415

    base = ["train", "--data-dir", tiny_npz, "--model", "logreg", "--no-progress", "--max-steps", "3"]
    assert main([*base, "--method", "ctld", "--opt", "eta_alpha=1e-6", "--opt", "phi=quadratic",
                 "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert saved["optimizer_options"] == {"eta_alpha": 1e-6, "phi": "quadratic"}
    capsys.readouterr()
    for opt, needle in (("eta_alpha", "KEY=VALUE"), ("lr=2", "set by the driver"), ("bogus=1", "bogus"),
                        ("eta_alpha=nan", "finite")):
        assert main([*base, "--method", "ctld", "--opt", opt, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert main(["train", "--resume", str(tmp_path / "a"), "--opt", "eta_alpha=1", "--no-progress"]) == 2
    assert "--opt: cannot be changed" in capsys.readouterr().err


@pytest.mark.parametrize("exact", [False, True])
def test_non_finite_gradient_stops_the_run_on_both_paths(tiny_npz, exact):
    """The driver reads the default path's lazy finite flags after every step: a NaN gradient raises a
    FloatingPointError naming the parameter, as the exact path's step does (before writing, there)."""
    import types  # noqa: PLC0415

    c = _cfg(tiny_npz, method="sgld_vc", weight_format="fixed:8:6", exact=exact).validate()
    model = torch.nn.Linear(4, 3)
    params = list(model.parameters())
    opt = tt.build_optimizer(c, params, num_data=640)
    assert opt.exact is exact
    for p in params:
        p.grad = torch.zeros_like(p)
    params[1].grad[2] = float("nan")
    run = types.SimpleNamespace(optimizer=opt, params=params, config=c, num_data=640)
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[1\]"):
        tt._optimizer_step(run, 0.5)

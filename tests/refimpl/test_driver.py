"""The driver contract: shapes, storage modes, reproducibility, noise replay, resume, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import refimpl
from refimpl.driver import NonFiniteGradientError, SampleStats, registered_methods
from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat
from refimpl.targets import double_well, logistic_regression

SGLD_METHODS = ["sgld", "sgd_lp_f", "sgd_lp_l", "sgld_lp_f", "sgld_lp_l", "sgld_vc"]
SGHMC_METHODS = ["sghmc", "sghmc_lp_f", "sghmc_lp_l", "sghmc_vc"]
ALL = SGLD_METHODS + SGHMC_METHODS


def _kw(method, **extra):
    kw = dict(n_chains=7, n_steps=25, step_size=0.05, seed=3, x0=0.7)
    if method not in ("sgld", "sghmc"):
        kw["fmt"] = FixedPoint(8, 4)
    if method.startswith("sghmc"):
        kw.update(friction=2.0, inverse_mass=1.5)
    kw.update(extra)
    return kw


def test_registry_lists_all_methods():
    assert set(ALL) <= set(registered_methods())


@pytest.mark.parametrize("method", ALL)
def test_shapes_dtype_and_bit_reproducibility(method):
    a = refimpl.sample(method, "gaussian", dim=3, **_kw(method))
    b = refimpl.sample(method, "gaussian", dim=3, **_kw(method))
    c = refimpl.sample(method, "gaussian", dim=3, **_kw(method, seed=4))
    assert a.shape == (25, 7, 3) and a.dtype == np.float64
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    last = refimpl.sample(method, "gaussian", dim=3, keep="last", **_kw(method))
    assert last.shape == (1, 7, 3) and np.array_equal(last[0], a[-1])


@pytest.mark.parametrize("burn_in, thin", [(0, 1), (5, 1), (3, 4), (24, 7), (25, 1)])
def test_burn_in_and_thin_are_slicing(burn_in, thin):
    full = refimpl.sample("sgld", "gaussian", **_kw("sgld"))
    part = refimpl.sample("sgld", "gaussian", burn_in=burn_in, thin=thin, **_kw("sgld"))
    assert np.array_equal(part, full[burn_in::thin])


def test_stats_mode_matches_stored_samples():
    kw = _kw("sgld_lp_l", n_chains=50, n_steps=200)
    full = refimpl.sample("sgld_lp_l", "gaussian", dim=2, burn_in=20, thin=3, **kw)
    st = refimpl.sample("sgld_lp_l", "gaussian", dim=2, burn_in=20, thin=3, keep="stats", hist_range=(-2, 2),
                        hist_bins=16, **kw)
    assert isinstance(st, SampleStats) and st.n == full.shape[0]
    np.testing.assert_allclose(st.chain_mean, full.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.chain_var, full.var(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(st.mean, full.reshape(-1, 2).mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.var, full.reshape(-1, 2).var(axis=0), rtol=1e-10)
    for j in range(2):
        x = full[:, :, j]
        counts, _ = np.histogram(x[(x >= -2) & (x < 2)], bins=st.hist_edges)  # half-open bins [a, b)
        assert np.array_equal(st.hist_counts[j], counts)
        assert st.underflow[j] == np.sum(full[:, :, j] < -2) and st.overflow[j] == np.sum(full[:, :, j] >= 2)
    assert np.array_equal(st.last, refimpl.sample("sgld_lp_l", "gaussian", dim=2, keep="last", **kw)[0])


@pytest.mark.parametrize("method", ALL)
def test_noise_replay_is_bit_identical(method):
    """draw_noise + sample(noise=...) equals the in-loop Generator run, bit for bit."""
    tgt = logistic_regression(np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3, batch_size=4)
    for target, extra in ((("gaussian", dict(dim=2, grad_noise=0.3))), (tgt, {})):
        kw = _kw(method, **extra)
        ref = refimpl.sample(method, target, **kw)
        spec_kw = {k: kw[k] for k in ("dim", "grad_noise") if k in kw}
        z = refimpl.draw_noise(method, kw["n_steps"], kw["n_chains"], kw["seed"], target=target, **spec_kw)
        spec = refimpl.noise_spec(method, target=target, **spec_kw)
        assert z.shape[2] == sum(int(np.prod(s)) for _, _, s in spec)
        rep = refimpl.sample(method, target, **{**kw, "seed": 999}, noise=z)
        assert rep.tobytes() == ref.tobytes()


def test_noise_spec_layout():
    assert refimpl.noise_spec("sgld", 2) == [("xi", "normal", (2,))]
    assert [n for n, _, _ in refimpl.noise_spec("sgld_vc", 1, grad_noise=0.1)] == [
        "grad_noise", "u_grad", "xi", "u_round", "u_cat"]
    assert [n for n, _, _ in refimpl.noise_spec("sghmc_lp_f", 1)] == ["u_weight", "u_grad", "z1", "z2"]
    assert [n for n, _, _ in refimpl.noise_spec("sgld_lp_l", 1)] == ["u_grad", "xi", "u_weight"]


@pytest.mark.parametrize("method", ["sgld_vc", "sghmc_lp_l"])
def test_resume_continues_bit_for_bit(method):
    kw = _kw(method, n_steps=30)
    full = refimpl.sample(method, "gaussian", dim=2, **kw)
    a, st = refimpl.sample(method, "gaussian", dim=2, return_state=True, **{**kw, "n_steps": 12})
    b = refimpl.sample(method, "gaussian", dim=2, resume=st, **{**kw, "n_steps": 18, "x0": None})
    assert np.concatenate([a, b]).tobytes() == full.tobytes()


def test_progress_bar_does_not_change_bits():
    kw = _kw("sgld", n_steps=40)
    assert refimpl.sample("sgld", "gaussian", progress=True, **kw).tobytes() == \
        refimpl.sample("sgld", "gaussian", progress=False, **kw).tobytes()


def test_nonfinite_gradient_names_step_and_chain_and_keeps_samples():
    """Double well, T = 0, a step too large: chain 1 diverges; the error names step and chain."""
    x0 = np.array([[0.5], [3.0], [0.2]])
    with pytest.raises(NonFiniteGradientError, match=r"step \d+ in chain 1") as info:
        refimpl.sample("sgld", double_well(1), n_chains=3, n_steps=50, step_size=0.3, seed=0, temperature=0.0, x0=x0)
    err = info.value
    assert err.chain == 1 and err.step > 1
    assert err.samples.shape == (err.step, 3, 1) and np.all(np.isfinite(err.samples[:, 0]))
    # the stored samples are the ones of a run that stops just before the failing step
    ok = refimpl.sample("sgld", double_well(1), n_chains=3, n_steps=err.step, step_size=0.3, seed=0,
                        temperature=0.0, x0=x0)
    assert np.array_equal(ok, err.samples)
    with pytest.raises(NonFiniteGradientError) as info2:
        refimpl.sample("sgld", double_well(1), n_chains=3, n_steps=50, step_size=0.3, seed=0, temperature=0.0,
                       x0=x0, keep="stats")
    assert info2.value.samples.n == err.step


@pytest.mark.parametrize("bad, match", [
    (dict(step_size=0.0), "step_size"), (dict(step_size=-1.0), "step_size"), (dict(n_chains=0), "n_chains"),
    (dict(temperature=-0.1), "temperature"), (dict(method="nope"), "method"), (dict(target="nope"), "target"),
    (dict(keep="some"), "keep"), (dict(burn_in=-1), "burn_in"), (dict(thin=0), "thin"), (dict(n_steps=0), "n_steps"),
    (dict(x0=np.zeros((2, 2))), "x0"), (dict(fmt=FixedPoint(8, 4)), "fmt"), (dict(friction=1.0), "friction"),
    (dict(grad_noise=-1.0), "grad_noise"), (dict(dim=0), "dim"), (dict(seed=-3), "seed"),
    (dict(method="sgld_vc"), "fmt"), (dict(method="sghmc", friction=0.0), "friction"),
    (dict(method="sghmc", inverse_mass=-2.0), "inverse_mass"), (dict(inverse_mass=1.0), "inverse_mass"),
    (dict(method="sgld_lp_l", fmt=BlockFloatingPoint(8, 0)), "fmt"),
    (dict(method="sgld_lp_l", fmt="fixed:8:4", whatever=1), "whatever"),
    (dict(method="sghmc_lp_l", fmt=BlockFloatingPoint(8), velocity_rescaling="paper"), "velocity_rescaling"),
    (dict(method="sghmc", position_sign="plus"), "position_sign"),
])
def test_bad_input_raises_value_error_naming_argument(bad, match):
    kw = dict(method="sgld", target="gaussian", n_chains=2, n_steps=3, step_size=0.1, seed=0)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        refimpl.sample(kw.pop("method"), kw.pop("target"), **kw)


@pytest.mark.parametrize("fmt", [FixedPoint(8, 4), BlockFloatingPoint(6), FloatingPoint(4, 3), IEEEFloat("bfloat16"),
                                 "fixed:10:6", "ieee:float16"])
def test_weight_and_gradient_formats_are_independent(fmt):
    a = refimpl.sample("sgld_lp_l", "gaussian", dim=2, fmt=fmt, grad_fmt="fixed:8:2", **_kw("sgld", n_chains=3))
    b = refimpl.sample("sgld_lp_l", "gaussian", dim=2, fmt=fmt, grad_fmt="none", **_kw("sgld", n_chains=3))
    assert a.shape == b.shape and not np.array_equal(a, b)


_PARITY_SCRIPT = textwrap.dedent("""
    import hashlib, json, numpy as np, refimpl
    from refimpl.formats import FixedPoint
    out = {}
    for m in %r:
        kw = dict(n_chains=3, n_steps=6, step_size=0.05, seed=5, dim=2, grad_noise=0.2)
        if m not in ("sgld", "sghmc"):
            kw["fmt"] = FixedPoint(8, 4)
        if m.startswith("sghmc"):
            kw.update(friction=2.0, inverse_mass=1.5)
        out[m] = hashlib.sha256(refimpl.sample(m, "mixture", **kw).tobytes()).hexdigest()
    print(json.dumps(out))
""" % (ALL,))


def test_jit_and_disable_jit_agree_bit_for_bit():
    """The same small runs under NUMBA_DISABLE_JIT=1 (pure Python) give identical bytes."""
    res = {}
    for flag in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=flag)
        proc = subprocess.run([sys.executable, "-c", _PARITY_SCRIPT], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        res[flag] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["0"] == res["1"]


def test_command_line_sample(capsys):
    from qlangevin.cli import main

    assert main(["sample", "sgld_vc", "--fmt", "fixed:8:3", "--chains", "50", "--steps", "200",
                 "--step-size", "0.01", "--grad-noise", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "sgld_vc on gaussian" in out and "E[x^2]" in out
    assert main(["sample", "sgld", "--fmt", "fixed:8:3", "--steps", "10"]) == 2


# --------------------------------------------------------------------------------------
# registry, the one chunk loop, the gradient-format default, renamed options
# --------------------------------------------------------------------------------------
def test_every_table_method_is_registered_by_its_family():
    from refimpl import methods, registry

    assert set(registered_methods()) == set(methods.METHODS)
    for name, row in methods.METHODS.items():
        spec = registry.lookup(name)
        assert spec.family == row.family and spec.run_chunk.py_func.__module__ == row.module


def test_driver_imports_no_family_and_families_import_no_driver():
    """The registry loads a family on first lookup; the driver holds no module list (a fresh process)."""
    script = textwrap.dedent("""
        import sys
        import refimpl.driver
        fams = ("refimpl.sgld", "refimpl.sghmc", "refimpl.qsgld", "refimpl.ctld")
        before = [m for m in fams if m in sys.modules]
        refimpl.driver.noise_spec("sghmc", 1)
        print(before, [m for m in fams if m in sys.modules])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[] ['refimpl.sghmc']"
    import refimpl.driver as drv

    src = open(drv.__file__).read()
    assert "FAMILY_MODULES" not in src and "import_module" not in src
    for fam in ("sgld", "sghmc", "qsgld", "ctld"):
        fsrc = open(os.path.join(os.path.dirname(drv.__file__), f"{fam}.py")).read()
        top = [ln for ln in fsrc.splitlines() if ln.startswith(("from ", "import "))]  # module-level imports
        assert any("registry import" in ln for ln in top) and not any("driver" in ln for ln in top), fam


def test_the_four_chunk_loops_are_one_template():
    """Every family's jitted loop is the one template of refimpl._loop, with the family's kernels bound."""
    from refimpl import _loop, ctld, qsgld, sghmc, sgld

    template = _loop._chunk_loop_template(0).__code__
    for fam in (sgld, sghmc, qsgld, ctld):
        fn = fam.run_chunk.py_func
        assert fn.__code__ is template or fn.__code__.co_code == template.co_code, fam.__name__
        assert fn.__globals__["step_all"] is fam.step_all and fn.__globals__["new_scratch"] is fam.new_scratch
        assert "def run_chunk" not in open(fam.__file__).read(), fam.__name__


def test_grad_fmt_default_quantizes_onto_the_weight_format():
    """grad_fmt="same" (default) = the weight format; None / "none" = full precision (as torchport's grad_format)."""
    kw = dict(dim=2, fmt="fixed:8:4", grad_noise=0.3, **_kw("sgld", n_chains=3))
    default = refimpl.sample("sgld_lp_l", "gaussian", **kw)
    assert default.tobytes() == refimpl.sample("sgld_lp_l", "gaussian", grad_fmt="fixed:8:4", **kw).tobytes()
    assert default.tobytes() == refimpl.sample("sgld_lp_l", "gaussian", grad_fmt="same", **kw).tobytes()
    full = refimpl.sample("sgld_lp_l", "gaussian", grad_fmt=None, **kw)
    assert full.tobytes() == refimpl.sample("sgld_lp_l", "gaussian", grad_fmt="none", **kw).tobytes()
    assert not np.array_equal(full, default)


def test_renamed_option_still_works_with_a_warning():
    kw = _kw("sghmc", n_chains=3)
    new = refimpl.sample("sghmc", "gaussian", position_sign="paper", **kw)
    with pytest.warns(DeprecationWarning, match="position_sign"):
        old = refimpl.sample("sghmc", "gaussian", sghmc_position_sign="paper", **kw)
    assert new.tobytes() == old.tobytes()
    assert not np.array_equal(new, refimpl.sample("sghmc", "gaussian", **kw))


# --------------------------------------------------------------------------------------
# sizes checked up front; nothing lost on an interrupt or a failure
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    (dict(n_steps=10**13), "n_steps=10000000000000"),
    (dict(n_chains=10**13, n_steps=1), "n_chains=10000000000000"),
    (dict(n_steps=10**11, n_chains=1000), "keep='all'"),
])
def test_sizes_are_checked_before_running(bad, match):
    kw = dict(n_chains=1, step_size=0.1, seed=0)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        refimpl.sample("sgld", "gaussian", **kw)
    kw["keep"] = "stats"
    if bad.get("n_chains", 1) == 1000:  # the same run streaming statistics fits
        refimpl.driver._check_sizes(10**11, 1000, 1, 1, 1, "stats", 0, 1, 100)


def test_draw_noise_checks_its_size():
    with pytest.raises(ValueError, match="n_steps=1000000000000"):
        refimpl.draw_noise("sgld", 10**12, 10, 0)


def test_sigint_keeps_everything_and_resume_continues_bit_for_bit():
    """A real SIGINT (from a timer thread) stops a long run; err.samples / err.state hold what was done."""
    import signal
    import threading

    from refimpl.driver import SamplingInterrupted

    kw = dict(dim=4, n_chains=64, step_size=0.01, seed=11, x0=0.3)
    refimpl.sample("sgld", "gaussian", n_steps=2, **kw)  # compile first: the timer then hits the loop
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(SamplingInterrupted) as info:
            refimpl.sample("sgld", "gaussian", n_steps=10**10, keep="last", **kw)
    finally:
        timer.cancel()
    err = info.value
    assert isinstance(err, KeyboardInterrupt) and 0 < err.step < 10**10 and err.state.step == err.step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    straight = refimpl.sample("sgld", "gaussian", n_steps=err.step, keep="last", **kw)
    assert err.samples.tobytes() == straight.tobytes()
    more = refimpl.sample("sgld", "gaussian", n_steps=7, keep="last", resume=err.state, **{**kw, "x0": None})
    assert more.tobytes() == refimpl.sample("sgld", "gaussian", n_steps=err.step + 7, keep="last", **kw).tobytes()


def test_a_failure_between_chunks_keeps_the_samples(monkeypatch):
    """Mutation-style: a run_chunk that fails on its second call; the exception carries the first chunk."""
    import dataclasses

    from refimpl import registry

    spec = registry.lookup("sgld")
    calls = []

    def flaky(*args):
        calls.append(args[2:4])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return spec.run_chunk(*args)

    monkeypatch.setitem(registry._REGISTRY, "sgld", dataclasses.replace(spec, run_chunk=flaky))
    kw = dict(n_chains=1000, step_size=0.05, seed=2, x0=0.5)
    with pytest.raises(RuntimeError, match="disk full") as info:
        refimpl.sample("sgld", "gaussian", n_steps=5000, **kw)
    done = calls[0][1]
    assert 0 < done < 5000 and info.value.state.step == done
    monkeypatch.undo()
    assert info.value.samples.tobytes() == refimpl.sample("sgld", "gaussian", n_steps=done, **kw).tobytes()


@pytest.mark.parametrize("method", ["sgld_vc", "sghmc_lp_l", "qsgld", "ctld"])
def test_chunking_never_changes_the_bits(method, monkeypatch):
    """Chunks of a single step (CHUNK_SECONDS ~ 0) give the same bytes as one chunk, for every family."""
    import dataclasses

    import refimpl.driver as drv
    from refimpl import registry

    kw = _kw(method, n_steps=40, dim=2, grad_noise=0.2)
    if method in ("qsgld", "ctld"):
        kw.pop("fmt", None)
    if method == "qsgld":
        kw["rounding"] = "stochastic"
    one = refimpl.sample(method, "gaussian", keep="stats", **kw)
    monkeypatch.setattr(drv, "CHUNK_SECONDS", 1e-12)
    monkeypatch.setattr(drv, "FIRST_CHUNK_WORK", 1)
    calls = []
    spec = registry.lookup(method)
    counting = dataclasses.replace(spec, run_chunk=lambda *a: calls.append(1) or spec.run_chunk(*a))
    monkeypatch.setitem(registry._REGISTRY, method, counting)
    many = refimpl.sample(method, "gaussian", keep="stats", **kw)
    assert len(calls) == kw["n_steps"]  # one step per chunk
    assert one.chain_mean.tobytes() == many.chain_mean.tobytes() and one.last.tobytes() == many.last.tobytes()


def test_method_table_and_shared_formulas_need_no_torch():
    """refimpl.methods and refimpl.formulas (read by torchport) import neither torch nor a family module."""
    script = ("import sys, refimpl.methods, refimpl.formulas; "
              "print(sorted(m for m in ('torch', 'refimpl.sgld', 'refimpl.sghmc', 'refimpl.qsgld', 'refimpl.ctld') "
              "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"

"""Each claim passes on a correct sampler and rejects a deliberately broken one (mutation tests).

The claims run in ``tiny`` mode on the NumPy test double of ``refimpl.sample``
(tests/theory/theory_toy_sampler.py), so no Numba compilation is needed; one claim also
runs on the real ``refimpl.sample`` (and all of them under ``--runslow``).
Tolerances are the claims' own pass rules (5 SE + stated model error; see
theory.experiments.family_z: Šidák, family-wise α = 1% over the mode's budget of
checks; 3.76σ in tiny mode), and the broken variants miss by tens of SE.  Checked
offline for seeds 0–4.
"""

from __future__ import annotations

import numpy as np
import pytest
from theory_toy_sampler import (
    make_toy_sampler,  # tests/theory is on sys.path (pytest rootdir import mode)
)

from theory.claims import CLAIMS, Context, get_claims
from theory.mutations import mutate_sampler
from theory.report import run_claim

CORRECT = make_toy_sampler()

#: claim id -> (broken sampler it must reject, what is broken)
BROKEN = {
    "lpsgld-bounds-d1": (make_toy_sampler(noise_scale=3.0), "noise std ×3"),
    "sgld-overdispersion": (make_toy_sampler(vc_is_naive=True), "naive rounding where VC is expected"),
    "lpf-bias-vanishes": (make_toy_sampler(noise_scale=1.1), "noise std ×1.1: a bias that does not vanish as η → 0"),
    "sghmc-moments": (make_toy_sampler(flip_sign=True), "flipped SGHMC position sign"),
    "sghmc-fig4": (make_toy_sampler(flip_sign=True), "flipped SGHMC position sign"),
    "mixture-sghmc-faster": (make_toy_sampler(flip_sign=True), "flipped SGHMC position sign"),
    "gaussian-densities": (make_toy_sampler(vc_is_naive=True), "naive rounding where VC is expected"),
    "lpsghmc-thm4-5": (mutate_sampler(make_toy_sampler(), "lpl-is-lpf"), "naive LP-L silently runs LP-F"),
    "qsgld-temperature": (mutate_sampler(make_toy_sampler(), "qsgld-resolution-x1.05"), "QSGLD grid 5% finer than asked"),
}
#: claims that draw no samples (AskewSGD is an optimizer): their mutation is a code patch, tested in test_mutations.py
NO_SAMPLER = {"askewsgd-contraction"}

#: claims the NumPy double cannot run (CTLD's final α state): run on refimpl.sample with a named mutation
REFERENCE_ONLY = {"ctld-tempering": "ctld-bias-off"}
#: claims whose tiny run takes > 5 s (the theorems prescribe ~3·10⁴ steps; CTLD compiles its kernels): --runslow only
SLOW_ON_TOY = {"lpsghmc-thm4-5", "ctld-tempering"}


def _ids(marks_slow=SLOW_ON_TOY):
    return [pytest.param(c, marks=pytest.mark.slow) if c in marks_slow else c for c in sorted(set(BROKEN) | set(REFERENCE_ONLY))]


def _samplers(cid):
    """(correct sampler, broken sampler, what is broken) for a claim."""
    if cid in REFERENCE_ONLY:
        from theory.experiments import default_sampler

        return default_sampler(), mutate_sampler(None, REFERENCE_ONLY[cid]), REFERENCE_ONLY[cid]
    return CORRECT, BROKEN[cid][0], BROKEN[cid][1]


def _run(cid, sampler, seed=1, tmp_path=None):
    return run_claim(CLAIMS[cid], Context(sampler=sampler, mode="tiny", seed=seed, figures_dir=tmp_path))


@pytest.mark.parametrize("cid", _ids())
def test_claim_passes_on_correct_sampler(cid, tmp_path):
    entry = _run(cid, _samplers(cid)[0], tmp_path=tmp_path)
    assert entry["verdict"] == "pass", entry.get("error") or [m for m in entry["measurements"] if m["passed"] is False]
    for fig in entry["figures"]:
        assert (tmp_path / fig.split("/", 1)[1]).stat().st_size > 1000


@pytest.mark.parametrize("cid", _ids())
def test_claim_rejects_broken_sampler(cid):
    _, broken, what = _samplers(cid)
    entry = _run(cid, broken)
    assert entry["verdict"] == "fail", f"{cid} did not reject a sampler with {what}"


def test_askewsgd_claim_passes():
    assert _run("askewsgd-contraction", CORRECT)["verdict"] == "pass"


def test_d10_bounds_claim_passes():
    assert _run("lpsgld-bounds-d10", CORRECT)["verdict"] == "pass"


def test_every_claim_has_a_mutation_test():
    # mnist-lp (slow, torchport training): its mutation tests are in test_mnist_claim.py
    assert set(BROKEN) | set(REFERENCE_ONLY) | NO_SAMPLER | {"lpsgld-bounds-d10", "mnist-lp"} == set(CLAIMS)


def test_claim_records_are_complete():
    for c in CLAIMS.values():
        rec = c.record()
        for key in ("id", "source", "statement", "experiment", "measured", "prediction", "pass_rule"):
            assert isinstance(rec[key], str) and rec[key], (c.id, key)


def test_get_claims_selection():
    assert [c.id for c in get_claims(["sghmc-*"])] == ["sghmc-moments", "sghmc-fig4"]
    assert [c.id for c in get_claims(None)] == [c.id for c in CLAIMS.values() if not c.slow]  # slow ones only when asked
    assert len(get_claims(None, include_slow=True)) == len(CLAIMS)
    with pytest.raises(ValueError, match="unknown claim id 'nope'"):
        get_claims(["nope"])


def test_claims_reproducible():
    a = _run("sghmc-moments", CORRECT, seed=7)
    b = _run("sghmc-moments", CORRECT, seed=7)
    assert [m["value"] for m in a["measurements"]] == [m["value"] for m in b["measurements"]]


def test_error_in_experiment_is_reported_not_raised():
    def exploding(*args, **kwargs):
        raise RuntimeError("boom")

    entry = _run("sghmc-moments", exploding)
    assert entry["verdict"] == "error" and "boom" in entry["error"]


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        Context(sampler=CORRECT, mode="huge")


def test_one_claim_on_the_reference_sampler():
    pytest.importorskip("refimpl.driver")
    from theory.experiments import default_sampler

    entry = _run("sghmc-moments", default_sampler())
    assert entry["verdict"] == "pass", [m for m in entry["measurements"] if m["passed"] is False]


@pytest.mark.slow
@pytest.mark.parametrize("cid", sorted(cid for cid, c in CLAIMS.items() if not c.slow))
@pytest.mark.parametrize("seed", [0, 1])
def test_every_claim_on_the_reference_sampler_quick(cid, seed):
    from theory.experiments import default_sampler

    entry = run_claim(CLAIMS[cid], Context(sampler=default_sampler(), mode="quick", seed=seed))
    assert entry["verdict"] == "pass", entry.get("error") or [m for m in entry["measurements"] if m["passed"] is False]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_tiny_claims_stable_over_seeds(seed):
    for cid in sorted(BROKEN):
        assert _run(cid, CORRECT, seed=seed)["verdict"] == "pass", (cid, seed)
        assert _run(cid, BROKEN[cid][0], seed=seed)["verdict"] == "fail", (cid, seed)


def test_law_path_matches_law_at_step():
    from theory.experiments import law_at_step, law_path

    kw = dict(n_chains=50, step_size=0.1, seed=3, grad_noise=0.0)
    path = law_path(CORRECT, "sgld", "gaussian", steps=[3, 7, 5], **kw)
    assert path.shape == (3, 50, 1)
    last = law_at_step(CORRECT, "sgld", "gaussian", n_steps=7, **kw)
    np.testing.assert_array_equal(path[1], last)

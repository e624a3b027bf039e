"""Named plausible bugs (theory.mutations) that each claim catches at the tests' size.

Each claim runs in ``tiny`` mode on the NumPy test double with a named mutation
applied (the wrapper changes only the arguments passed to the sampler, or patches
the W2 estimator); the claim must fail.  Together with test_claims.py's
correct-sampler runs this shows every claim can fail for a reason a user could
plausibly introduce.  The quick- and full-size mutation tables (real sampler) are in
docs/results/verify.md.
"""

from __future__ import annotations

import pytest
from theory_toy_sampler import (
    make_toy_sampler,  # tests/theory is on sys.path (pytest rootdir import mode)
)

from theory.claims import CLAIMS, Context
from theory.mutations import MUTATIONS, mutate_sampler, mutation_context
from theory.report import run_claim

#: claim -> named bugs it must catch at tiny size (a subset of what it catches; see docs/results/verify.md)
CAUGHT_TINY = {
    "lpsgld-bounds-d1": ["w2-biased-low"],
    "lpsgld-bounds-d10": ["w2-biased-low"],
    "sgld-overdispersion": ["vc-is-naive"],
    "lpf-bias-vanishes": ["lpf-grad-at-theta", "noise-std-x1.05"],
    "sghmc-moments": ["sghmc-friction-x1.1", "vc-targets-0.9V"],
    "sghmc-fig4": ["sghmc-flipped-sign", "vc-targets-0.9V"],
    "mixture-sghmc-faster": ["w2-biased-low", "sghmc-flipped-sign"],
    "gaussian-densities": ["noise-std-x1.05"],
    "lpsghmc-thm4-5": ["lpl-is-lpf"],
    "qsgld-temperature": ["qsgld-resolution-x1.05"],
    "ctld-tempering": ["ctld-bias-off"],
    "askewsgd-contraction": ["askew-nu-x2"],
}
#: ~3·10⁴ prescribed steps on the NumPy double; CTLD needs refimpl (its final α state): --runslow only
SLOW = {"lpsghmc-thm4-5", "ctld-tempering"}
REFERENCE_ONLY = {"ctld-tempering"}

CASES = [pytest.param(cid, mut, marks=pytest.mark.slow) if cid in SLOW else (cid, mut)
         for cid, muts in CAUGHT_TINY.items() for mut in muts]


def test_every_claim_catches_a_named_mutation():
    assert set(CAUGHT_TINY) | {"mnist-lp"} == set(CLAIMS)  # mnist-lp: test_mnist_claim.py (vc-is-naive, lpl-is-lpf)
    assert {m for muts in CAUGHT_TINY.values() for m in muts} <= set(MUTATIONS)


@pytest.mark.parametrize("cid, mutation", CASES)
def test_claim_catches_named_mutation(cid, mutation):
    base = None if cid in REFERENCE_ONLY else make_toy_sampler()  # None: refimpl.sample
    with mutation_context(mutation):
        entry = run_claim(CLAIMS[cid], Context(sampler=mutate_sampler(base, mutation), mode="tiny", seed=1))
    assert entry["verdict"] == "fail", f"{cid} did not catch {mutation} ({MUTATIONS[mutation]}): {entry.get('error')}"


def test_estimator_mutation_is_undone():
    from theory import wasserstein as W

    orig = W.w2_1d_to_dist
    with mutation_context("w2-biased-low"):
        assert W.w2_1d_to_dist is not orig
    assert W.w2_1d_to_dist is orig


def test_unknown_mutation():
    with pytest.raises(ValueError, match="unknown mutation 'nope'"):
        mutate_sampler(make_toy_sampler(), "nope")

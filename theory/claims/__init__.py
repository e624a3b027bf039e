"""The published convergence claims as declarative records, each with an experiment that can fail.

One module per claim (or per family of claims), holding the claim's record and
its experiment side by side:

================================  =====================================================
module                            claims
================================  =====================================================
:mod:`.lpsgld_bounds`             ``lpsgld-bounds-d1``, ``lpsgld-bounds-d10``
:mod:`.sgld_overdispersion`       ``sgld-overdispersion``
:mod:`.lpf_bias_vanishes`         ``lpf-bias-vanishes``
:mod:`.sghmc_moments`             ``sghmc-moments``
:mod:`.sghmc_fig4`                ``sghmc-fig4``
:mod:`.mixture_sghmc_faster`      ``mixture-sghmc-faster``
:mod:`.gaussian_densities`        ``gaussian-densities``
:mod:`.lpsghmc_thm45`             ``lpsghmc-thm4-5``
:mod:`.qsgld_temperature`         ``qsgld-temperature``
:mod:`.ctld_tempering`            ``ctld-tempering``
:mod:`.askewsgd_contraction`      ``askewsgd-contraction``
:mod:`.mnist_lp`                  ``mnist-lp`` (slow: only with ``--mnist`` or ``--only mnist-lp``)
================================  =====================================================

A :class:`Claim` names its source (paper, theorem or figure), the statement, the
experiment, the measured quantity, the prediction or bound it is compared with,
and the pass rule; ``claim.run(ctx)`` runs the experiment with the sampler in
``ctx`` (injectable, so tests can substitute broken samplers) and returns an
:class:`Outcome`: one :class:`~theory.experiments.Measurement` per judged or
reported quantity, figures, and extra information.  A claim passes when every
judged measurement passes (and at least one is judged).

Sizes come in three modes: ``"tiny"`` (tests, seconds), ``"quick"`` (the README's
``qlangevin verify --quick``) and ``"full"`` (the complete grid).  Everything is
seeded from ``ctx.seed`` through :func:`theory.experiments.derive_seed`, so a run
is reproducible bit for bit.

Predictions cite spec §5.8 (P0–P9) [derived]; bounds cite spec §5.1 (T1–T3)
[paper†].  The W2 figures hold the law at step k = ``n_steps`` (one draw per chain).

Adding a claim: a new module defining ``CLAIM`` (or ``CLAIMS``, a list) and its
experiment, and one line in ``_MODULES`` below.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from theory.claims._common import MODES, Claim, Context, Outcome, fixed_point

__all__ = ["Claim", "Context", "Outcome", "CLAIMS", "MODES", "get_claims", "fixed_point"]

#: claim modules in registry (report) order
_MODULES = (
    "lpsgld_bounds",
    "sgld_overdispersion",
    "lpf_bias_vanishes",
    "sghmc_moments",
    "sghmc_fig4",
    "mixture_sghmc_faster",
    "gaussian_densities",
    "lpsghmc_thm45",
    "qsgld_temperature",
    "ctld_tempering",
    "askewsgd_contraction",
    "mnist_lp",
)

CLAIMS: dict[str, Claim] = {}


def _register(claim: Claim) -> None:
    if claim.id in CLAIMS:
        raise ValueError(f"duplicate claim id {claim.id!r}")
    CLAIMS[claim.id] = claim


for _name in _MODULES:
    _mod = importlib.import_module(f"theory.claims.{_name}")
    for _claim in getattr(_mod, "CLAIMS", None) or [_mod.CLAIM]:
        _register(_claim)
del _name, _mod, _claim


def get_claims(only: Sequence[str] | None = None, *, include_slow: bool = False) -> list[Claim]:
    """Claims in registry order.

    ``only``: ids (exact; a slow claim is selected by its id) or prefixes ending in ``*``
    (these match slow claims only with ``include_slow``); None: every claim that is not
    slow, and the slow ones too with ``include_slow`` (``qlangevin verify --mnist``).
    Unknown ids raise ``ValueError``.
    """
    if not only:
        return [c for c in CLAIMS.values() if include_slow or not c.slow]
    chosen = []
    for key in only:
        if key.endswith("*"):
            hits = [c for c in CLAIMS.values() if c.id.startswith(key[:-1]) and (include_slow or not c.slow)]
        else:
            hits = [CLAIMS[key]] if key in CLAIMS else []
        if not hits:
            raise ValueError(f"unknown claim id {key!r}; known: {', '.join(CLAIMS)}")
        chosen.extend(h for h in hits if h not in chosen)
    if include_slow:
        chosen.extend(c for c in CLAIMS.values() if c.slow and c not in chosen)
    return chosen

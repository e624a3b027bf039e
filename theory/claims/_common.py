"""Shared machinery of the claims: the :class:`Claim` record, the :class:`Context` an experiment
runs in, its :class:`Outcome`, size modes, figure saving, and small helpers used by several claims.

Sizes come in three modes: ``"tiny"`` (tests, seconds), ``"quick"`` (the README's
``qlangevin verify --quick``) and ``"full"`` (the complete grid).  Everything is
seeded from ``ctx.seed`` through :func:`theory.experiments.derive_seed`, so a run
is reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from theory import predictions as P
from theory.experiments import (
    FAMILY_SIZE,
    Measurement,
    Sampler,
    family_z,
    variance_estimate,
    within_prediction,
)

__all__ = ["MODES", "PUBLICATION_VERDICTS", "SRC_LPSGHMC", "SRC_LPSGLD", "Claim", "Context", "Outcome", "fixed_point", "verdict_line"]

SRC_LPSGLD = "Zhang, Wilson & De Sa, Low-precision SGLD, ICML 2022"
SRC_LPSGHMC = "Wang, Chen, Song & Zhang, Low-precision SGHMC, TMLR 2024"

MODES = ("tiny", "quick", "full")


@dataclass
class Context:
    """What a claim's experiment needs: the sampler, the size mode, the seed, where figures go."""

    sampler: Sampler
    mode: str = "quick"
    seed: int = 0
    figures_dir: Path | None = None
    log: Callable[[str], None] = field(default=lambda msg: None)
    #: True while theory.tasks plans the run (surrogate draws): skip costly work that draws no samples
    planning: bool = False
    #: the number of judged checks of the whole run (the Šidák family), counted by theory.tasks while planning;
    #: None when a claim runs on its own (tests): then the mode's fixed budget FAMILY_SIZE[mode] is used
    family_size: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        fs = self.family_size
        if fs is not None:
            if isinstance(fs, bool) or not isinstance(fs, (int, np.integer)):
                raise TypeError(f"family_size must be an int or None, got {fs!r}")
            if fs < 1:
                raise ValueError(f"family_size must be >= 1, got {fs!r}")

    def pick(self, **by_mode):
        """The value for the current mode: ``ctx.pick(tiny=..., quick=..., full=...)``."""
        return by_mode[self.mode]

    @property
    def z(self) -> float:
        """The judging threshold: family-wise α = 1% (Šidák) over the run's judged checks.

        ``family_size`` (the exact count of the run, from theory.tasks' planning pass) when set,
        else the mode's budget ``FAMILY_SIZE[mode]`` (a claim run on its own).
        """
        return family_z(self.family_size if self.family_size is not None else FAMILY_SIZE[self.mode])


@dataclass
class Outcome:
    """What a claim's experiment returns: measurements (report rows), figure paths relative to the report directory, extras."""

    measurements: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: the publication verdict: (one of PUBLICATION_VERDICTS, the reason), decided by the experiment
    publication: tuple[str, str] | None = None
    #: convergence diagnostics (theory.experiments.chain_diagnostics) of the series kept with several
    #: draws per chain; empty when every row uses one draw per independent chain
    diagnostics: list = field(default_factory=list)
    #: how the rows' draws relate to the chains (None: the default note of theory.report.diagnostics_entry)
    draws_note: str | None = None

    def implementation_verdict(self) -> str:
        """"pass" iff at least one measurement is judged and every judged one passed."""
        judged = [m.passed for m in self.measurements if m.passed is not None]
        return "pass" if judged and all(judged) else "fail"


#: publication verdicts: the published figure, table or sentence is reproduced ...
PUBLICATION_VERDICTS = ("yes", "partly", "no", "not checkable here")


def verdict_line(implementation: str, publication: str | None) -> str:
    """How both verdicts are displayed together (console, report.md, figure titles).

    Never a bare PASS: the implementation verdict always comes with the publication one.
    """
    return f"implementation {implementation.upper()} · publication: {publication or 'not decided'}"


@dataclass(frozen=True)
class Claim:
    """A declarative claim record (see module docstring)."""

    id: str
    source: str
    statement: str
    experiment: str
    measured: str
    prediction: str
    pass_rule: str
    run: Callable[[Context], Outcome] = field(repr=False, compare=False)
    #: the published figure, table or sentence the publication verdict compares with, and how
    published: str = ""
    #: relative cost of the quick run (CPU seconds measured on the 2-core dev machine); the
    #: process pool starts the most expensive claims first
    weight: float = field(default=1.0, compare=False)
    #: False when every judged check of the claim is deterministic (no Monte Carlo error, e.g. AskewSGD's
    #: contraction): such checks cannot raise a false alarm, so they are not in the run's Šidák family
    monte_carlo: bool = field(default=True, compare=False)
    #: True for a slow claim that runs only when asked for (``qlangevin verify --mnist`` or ``--only ID``)
    slow: bool = field(default=False, compare=False)

    def record(self) -> dict:
        """The declarative part of the claim (everything but ``run``), as written into report.json."""
        return {
            "id": self.id,
            "source": self.source,
            "statement": self.statement,
            "experiment": self.experiment,
            "measured": self.measured,
            "prediction": self.prediction,
            "pass_rule": self.pass_rule,
            "published": self.published,
        }


def fixed_point(fl: int, integer_bits: int = 5):
    """``FixedPoint(fl + integer_bits, fl)``: Δ = 2^−fl, range ±2^(integer_bits − 1) (±16 by default)."""
    from refimpl.formats import FixedPoint

    return FixedPoint(int(fl) + int(integer_bits), int(fl))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ctx: Context, name: str, out: Outcome):
    """Save ``fig`` as ``figures/<name>``, with both verdicts (as decided so far) in its title."""
    from matplotlib.ticker import NullFormatter

    pub = out.publication[0] if out.publication else None
    fig.suptitle(verdict_line(out.implementation_verdict(), pub), fontsize=9, y=1.02)
    if len(fig.axes) == 1 and fig.axes[0].get_legend() is not None:  # a legend that hides no data: outside the axes
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in fig.axes:  # no crowded minor labels on log axes
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(NullFormatter())
    if ctx.figures_dir is None:
        _plt().close(fig)
        return
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.figures_dir / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    out.figures.append(f"figures/{name}")


def _transient(eta: float, n_steps: int) -> float:
    """1 − (1 − η)^{2k}: fraction of the stationary second moment reached at step k from θ_0 = 0 (P0)."""
    return 1.0 - (1.0 - eta) ** (2 * n_steps)


def _var_row(ctx, label, params, draws, prediction, model_error=0.0, quantity="E θ² at step k", note="", center=0.0):
    """A judged second-moment row: |measured − predicted| ≤ ctx.z·SE + model error."""
    est = variance_estimate(draws, center=center)
    ok, tol = within_prediction(est.value, est.se, prediction, model_error, z=ctx.z)
    return Measurement(label, params, quantity, est.value, (est.lo, est.hi), est.se, prediction, None, tol, ok, note)


def _naive_prediction(eta, delta):
    """P3 regime formula (spec: accurate to about 1%); 2.4% slack at the Fig. 1 point η = 10⁻³, Δ = 1/8."""
    return P.sgld_lp_l_variance(eta, delta, boundary_slack=0.05)



def _w2_null_row(ctx, label: str, estimator, draw_exact, expected: float, *, n: int, n_rep: int, seed: int, note: str = ""):
    """Judged two-sided check of a W2 estimator against its known null at the size used.

    ``estimator(sample) -> W2``; ``draw_exact(n, rng)`` draws an exact target sample;
    ``expected``: E[W2²] under the null from an independent computation
    (:func:`theory.wasserstein.w2sq_1d_null_mean`).  The mean of W2² over ``n_rep`` exact
    samples must agree with it within ctx.z standard errors: an estimator biased low
    (or high) is caught, which the one-sided bound checks alone never could.
    """
    rng = np.random.default_rng(seed)
    vals = np.array([estimator(draw_exact(n, rng)) ** 2 for _ in range(2 if ctx.planning else int(n_rep))])
    m = float(vals.mean())
    se = float(vals.std(ddof=1) / np.sqrt(vals.size))
    ok, tol = within_prediction(m, se, expected, 0.0, z=ctx.z)
    return Measurement(label, {"n": n, "n_rep": int(n_rep)}, "mean W2² of the estimator over exact target samples (the null)",
                       m, (m - 1.96 * se, m + 1.96 * se), se, float(expected), None, tol, ok,
                       note or "two-sided; prediction: E W2² under the null computed from order-statistic means (independent of the estimator's code)")

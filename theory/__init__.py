"""theory: the convergence theorems as code, Wasserstein estimators, and the claims behind
``qlangevin verify`` (see docs/architecture.md and docs/theory.md).

Submodules (imported lazily so that ``import theory`` stays cheap):

* :mod:`theory.predictions` -- exact stationary moments on a 1-D Gaussian (spec §5.8 P0–P9);
* :mod:`theory.bounds` -- one function per theorem (LP-SGLD Thms 1–3, LP-SGHMC Thms 1–9);
* :mod:`theory.wasserstein` -- W2 estimators (1-D exact, Bures, POT emd2, sliced);
* :mod:`theory.claims`, :mod:`theory.experiments` -- the declarative claims and their experiments;
* :mod:`theory.report`, :mod:`theory.cli_verify` -- ``qlangevin verify``.
"""

from __future__ import annotations

import importlib

__all__ = ["predictions", "bounds", "lpsgld", "lpsghmc", "wasserstein", "claims", "experiments", "report"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"theory.{name}")
    raise AttributeError(f"module 'theory' has no attribute {name!r}")

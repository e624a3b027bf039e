"""LP-SGLD theorems under the spec's names (ALGORITHMS.md §5.1: ``theory.lpsgld.thm1/thm2/thm3``).

Thin aliases of :mod:`theory.bounds` (where the docstrings, sources, assumptions and
constants live): Zhang, Wilson & De Sa (ICML 2022) Theorems 1–3, spec (T0)–(T3), and the
SGLD counterparts of the LP-SGHMC paper (TMLR 2024, App. B, Theorems 7–9; rates only).
"""

from theory.bounds import SGLDBound  # noqa: F401
from theory.bounds import lpsgld_base as base
from theory.bounds import lpsgld_thm1 as thm1
from theory.bounds import lpsgld_thm2 as thm2
from theory.bounds import lpsgld_thm3 as thm3  # noqa: F401
from theory.bounds import lpsgld_thm3_A as thm3_A
from theory.bounds import lpsgld_thm7 as thm7  # noqa: F401
from theory.bounds import lpsgld_thm8 as thm8
from theory.bounds import lpsgld_thm9 as thm9

__all__ = ["SGLDBound", "base", "thm1", "thm2", "thm3", "thm3_A", "thm7", "thm8", "thm9"]

"""LP-SGHMC theorems under short names (Wang, Chen, Song & Zhang, TMLR 2024; spec §5.3–§5.5).

Thin aliases of :mod:`theory.bounds`: Theorems 1–3 (non-log-concave, rates only),
Theorems 4–6 (strongly log-concave, explicit step size and iteration count) and the
step-size condition of §5.3.
"""

from theory.bounds import Rate, StepAndIterations  # noqa: F401
from theory.bounds import lpsghmc_thm1 as thm1  # noqa: F401
from theory.bounds import lpsghmc_thm2 as thm2
from theory.bounds import lpsghmc_thm3 as thm3
from theory.bounds import lpsghmc_thm4 as thm4  # noqa: F401
from theory.bounds import lpsghmc_thm5 as thm5
from theory.bounds import lpsghmc_thm6 as thm6
from theory.bounds import sghmc_step_size_condition as step_size_condition

__all__ = ["Rate", "StepAndIterations", "step_size_condition", "thm1", "thm2", "thm3", "thm4", "thm5", "thm6"]

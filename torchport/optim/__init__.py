"""torch.optim optimizers for every algorithm of the spec (see docs/torchport.md).

* SGLD family (:mod:`.sgld`): :class:`SGLD` (S1), :class:`LowPrecisionSGLD` (S2)-(S6).
* SGHMC family (:mod:`.sghmc`): :class:`SGHMC` (H1), :class:`LowPrecisionSGHMC` (H2)-(H4).
* :class:`QSGLD` (QS1)-(QS5) and :class:`CTLD` (C1)-(C6) (:mod:`.qsgld`, :mod:`.ctld`).
* Which optimizer (and which arguments) runs each sampler method: the method table,
  :func:`refimpl.methods.torch_optimizer` (docs/crosswalk-names.md).
* Quantized-network optimizers (:mod:`.netopt`): :class:`AskewSGD`, :class:`BinaryConnect`, :class:`ProxQuant`.
* Schedules (:mod:`.schedules`): :class:`CyclicalSchedule` (S8), :func:`decay_schedule_factor` (S7).
"""

from torchport.optim._base import NoisyOptimizer
from torchport.optim.ctld import CTLD
from torchport.optim.netopt import AskewSGD, BinaryConnect, ProxQuant
from torchport.optim.qsgld import QSGLD
from torchport.optim.schedules import CyclicalSchedule, decay_schedule_factor
from torchport.optim.sghmc import SGHMC, LowPrecisionSGHMC, sghmc_coefficients
from torchport.optim.sgld import SGLD, LowPrecisionSGLD

__all__ = ["NoisyOptimizer", "SGLD", "LowPrecisionSGLD", "SGHMC", "LowPrecisionSGHMC", "sghmc_coefficients",
           "QSGLD", "CTLD", "AskewSGD", "BinaryConnect", "ProxQuant", "CyclicalSchedule", "decay_schedule_factor"]

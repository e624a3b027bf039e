"""qlangevin: reference implementation of low-precision and quantized Langevin sampling.

The distribution installs three import packages, mirroring the layout of the
mathematics (see ``docs/architecture.md``):

* :mod:`refimpl`   -- Numba reference kernels: number formats, quantizers, samplers, optimizers.
* :mod:`theory`    -- the papers' bounds as code, Wasserstein estimators, claims and ``verify``.
* :mod:`torchport` -- the same algorithms as ``torch.optim`` optimizers.

This small package only holds the version and the ``qlangevin`` command line.
"""

__version__ = "0.2.0"

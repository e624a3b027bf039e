"""Jitted quantization kernels, one module per format kind (docs/quantizers.md, "Layout").

=========  =====================================================================
module     format
=========  =====================================================================
``fixed``  ``FixedPoint`` (kind 1)
``bfp``    ``BlockFloatingPoint`` (kind 2)
``float``  ``FloatingPoint``, qtorch semantics (kind 3)
``ieee``   ``IEEEFloat`` (kind 4; the float module's kernels with IEEE entries)
``mx``     ``MXFormat`` (OCP MX) and ``NVFP4`` (kind 5)
=========  =====================================================================

Each defines the same four ``@njit`` functions on contiguous 1-D arrays:
``nearest_into(x, out, code)`` (Q^d, (Q1)), ``stochastic_into(x, u, out, code)``
(Q^s, (Q2')), ``vc_into(mu, var, xi, u_round, u_cat, out, code)`` (Q^vc, (Q5)/(Q6))
and ``gap_into(mu, out, code)`` (the Δ Q^vc uses).  :mod:`torchport.kernels` has a
module of the same name per kind with the torch versions.  :mod:`refimpl._qkernels`
dispatches on ``code[KIND]`` (an unknown kind raises) and holds the parallel and row
variants; :mod:`refimpl.kernels.common` the shared scalar kernels.
"""

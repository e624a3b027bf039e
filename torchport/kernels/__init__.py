"""Torch quantization kernels, one module per format kind, named as in :mod:`refimpl.kernels`.

``fixed``, ``bfp``, ``float``, ``ieee`` (the float module's functions with IEEE
entries) and ``mx`` (OCP MX, NVFP4) each define ``nearest(x, code, fmt)``,
``stochastic(x, u, code, fmt)``, ``vc(mu, var, code, fmt, xi, u_round, u_cat)`` and
``gap(mu, code, fmt)`` on float64 tensors, performing the float64 operations of the
Numba kernel of the same name so that, fed the same noise, both agree bit for bit.
:mod:`torchport.quantize` dispatches on ``code[KIND]`` and raises on an unknown kind.
"""

"""Counter-based random numbers on torch tensors: the stream of :mod:`refimpl.counter_rng`, bit for bit.

Every number is a pure function of (seed, step, parameter index, stream id, element
index) -- docs/fast_path.md "The counter stream" and the module docstring of
:mod:`refimpl.counter_rng` give the definitions:

    bits(key, i) = mix(key + (i + 1)·φ)  (splitmix64, mod 2^64),
    u_k(i) = (bits(key, i) >> (64 - k))·2^-k,   k = 53 (float64) or 24 (float32/16),
    z(i) = sqrt(-2·log(1 - u_k(2i)))·cos(2π·u_k(2i + 1))   (Box–Muller).

Implementation: int64 tensors with wrap-around multiplication (two's complement, as
torch's CPU and CUDA integer kernels behave) and **logical** right shifts written as
``(z >> s) & (2^(64-s) - 1)`` (torch's ``>>`` on int64 is arithmetic).  Only integer
ops, casts and elementwise float ops: the functions run under ``torch.compile``
(inductor: C++/OpenMP on CPU, Triton on CUDA) and on any device, and since the
element index is an explicit ``arange(start, start + n)``, any sharding of a tensor
gives the same bits as the whole.

The uniforms are bit-identical to refimpl's.  The normals use ``torch.log``/``torch.cos``/
``torch.sqrt``, which may differ from libm (NumPy/Numba) in the last bit: measured and
tested bound |z_torch - z_refimpl| <= 4 ulp(|z|) + 4·2^-53 in float64 (documented in
docs/fast_path.md; tests/torchport/test_torch_counter_rng.py).
"""

from __future__ import annotations

import math
import numbers

import torch

from refimpl.counter_rng import PHI, STREAMS, stream_key

__all__ = ["STREAMS", "counter_bits", "key_tensor", "normals", "stream_key", "uniform_bits_for", "uniforms"]


def _signed(c: int) -> int:
    """The int64 with the same 64 bits as the unsigned c."""
    return c - (1 << 64) if c >= (1 << 63) else c


_PHI = _signed(PHI)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)


def _lsr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits by s (1 <= s <= 63)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _check_key_int(key) -> int:
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise TypeError(f"key must be an integer in [0, 2**64), got {key!r} ({type(key).__name__})")
    k = int(key)
    if not 0 <= k < (1 << 64):
        raise ValueError(f"key must be an integer in [0, 2**64), got {key!r}")
    return k


def _check_device(device):
    if device is None or isinstance(device, torch.device):
        return device
    if isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            return torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            pass
    raise ValueError(f"device must be a torch.device, a device string or None, got {device!r}")


def _check_int_tensor(t, name: str, zero_dim: bool = False) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be an int64 torch.Tensor, got {t!r} ({type(t).__name__})")
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 torch.Tensor, got a Tensor of dtype {t.dtype}")
    if zero_dim and t.dim() != 0:
        raise ValueError(f"{name} must be a 0-d int64 Tensor (key_tensor), got a Tensor of shape {tuple(t.shape)}")


def _check_float_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float64), got {dtype!r}")


def _check_count(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0, got {v!r} ({type(v).__name__})")
    if v < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    return int(v)


def _check_draw(key, n, start, dtype, device) -> None:
    """The checks of ``uniforms``/``normals``; skipped while torch.compile traces (n may be symbolic there)."""
    if torch.compiler.is_compiling():
        return
    _check_int_tensor(key, "key", zero_dim=True)
    n = _check_count(n, "n")
    start = _check_count(start, "start")
    if start + n > (1 << 63):
        raise ValueError(f"start + n must be <= 2**63 (element indices are int64), got start={start!r}, n={n!r}")
    _check_float_dtype(dtype)
    _check_device(device)


def key_tensor(key: int, device: torch.device | str | None = None) -> torch.Tensor:
    """A 0-d int64 tensor holding the 64 bits of ``key`` (so compiled code is not specialised on it).

    ``key`` is an integer in [0, 2^64) (``stream_key``'s result); TypeError/ValueError otherwise.
    """
    k = _check_key_int(key)
    return torch.tensor(_signed(k), dtype=torch.int64, device=_check_device(device))


def _counter_bits(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    index = index & 0x7FFFFFFFFFFFFFFF
    z = key + (index + 1) * _PHI
    z = (z ^ _lsr(z, 30)) * _M1
    z = (z ^ _lsr(z, 27)) * _M2
    return z ^ _lsr(z, 31)


def counter_bits(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """bits(key, i) for an int64 tensor of element indices ``index`` (int64 result, the 64 bits).

    ``key`` and ``index`` are int64 tensors (``key_tensor``; broadcast together); TypeError otherwise.
    ``index & (2^63 - 1)`` (a no-op for indices >= 0) keeps inductor from folding an
    ``arange`` index into its symbolic index arithmetic, where the wrapping product
    (i + 1)·φ came out wrong (torch 2.13 CPU, measured: 60 of 100 values differed).
    """
    if not torch.compiler.is_compiling():
        _check_int_tensor(key, "key")
        _check_int_tensor(index, "index")
    return _counter_bits(key, index)


def _bits_for(dtype: torch.dtype) -> int:
    return 53 if dtype == torch.float64 else 24


def uniform_bits_for(dtype: torch.dtype) -> int:
    """k of the k-bit uniforms used for ``dtype`` (a floating torch.dtype): 53 for float64, 24 otherwise."""
    _check_float_dtype(dtype)
    return _bits_for(dtype)


def _to_uniform(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    k = _bits_for(dtype)
    cdtype = torch.float64 if k == 53 else torch.float32
    u = _lsr(b, 64 - k).to(cdtype) * (2.0 ** -k)  # exact: an integer < 2^k times a power of two
    return u if u.dtype == dtype else u.to(dtype)


def _uniforms(key: torch.Tensor, n: int, start: int = 0, dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> torch.Tensor:
    """``uniforms`` without the argument checks (the fast path's traced steps call this)."""
    idx = torch.arange(start, start + n, dtype=torch.int64, device=device if device is not None else key.device)
    return _to_uniform(_counter_bits(key, idx), dtype)


def _normals(key: torch.Tensor, n: int, start: int = 0, dtype: torch.dtype = torch.float64,
             device: torch.device | str | None = None) -> torch.Tensor:
    """``normals`` without the argument checks (the fast path's traced steps call this)."""
    cdtype = torch.float64 if dtype == torch.float64 else torch.float32
    idx = torch.arange(start, start + n, dtype=torch.int64, device=device if device is not None else key.device)
    u1 = 1.0 - _to_uniform(_counter_bits(key, 2 * idx), cdtype)
    u2 = _to_uniform(_counter_bits(key, 2 * idx + 1), cdtype)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z if z.dtype == dtype else z.to(dtype)


def uniforms(key: torch.Tensor, n: int, *, start: int = 0, dtype: torch.dtype = torch.float64,
             device: torch.device | str | None = None) -> torch.Tensor:
    """u_k(start), ..., u_k(start + n - 1); k = 53 for float64, 24 for float32 (exact in float32).

    ``key`` a 0-d int64 tensor (``key_tensor``), ``n``/``start`` integers >= 0, ``dtype`` a
    floating torch.dtype: TypeError/ValueError naming the argument otherwise (checked in
    eager mode only; under ``torch.compile`` the checks are skipped, ``n`` may be symbolic).
    """
    _check_draw(key, n, start, dtype, device)
    return _uniforms(key, n, start, dtype, device)


def normals(key: torch.Tensor, n: int, *, start: int = 0, dtype: torch.dtype = torch.float64,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Box–Muller normals z(start), ..., z(start + n - 1), computed in ``dtype`` (float32 for narrower).

    Arguments checked as in :func:`uniforms`.
    """
    _check_draw(key, n, start, dtype, device)
    return _normals(key, n, start, dtype, device)

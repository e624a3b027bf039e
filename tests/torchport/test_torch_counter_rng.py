"""torchport.counter_rng: bit-identical to refimpl.counter_rng, shard-invariant, usable under torch.compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refimpl import counter_rng as C
from torchport import counter_rng as T

KEYS = [C.stream_key(0, 0, 0, "xi"), C.stream_key(20240601, 123456, 77, "u_cat"), (1 << 64) - 1, 1 << 63, 0]


@pytest.mark.parametrize("key", KEYS)
def test_bits_and_uniforms_bit_identical_to_refimpl(key):
    kt = T.key_tensor(key)
    idx = torch.arange(0, 5000, dtype=torch.int64)
    bits = T.counter_bits(kt, idx).numpy().view(np.uint64)
    assert [int(b) for b in bits[:50]] == [C._bits_py(key, i) for i in range(50)]
    assert np.array_equal(T.uniforms(kt, 5000).numpy(), C.uniforms(key, 5000))
    u32 = T.uniforms(kt, 5000, dtype=torch.float32)
    assert u32.dtype == torch.float32
    assert np.array_equal(u32.double().numpy(), C.uniforms(key, 5000, bits=24))


def test_large_element_indices_agree():
    key = C.stream_key(1, 2, 3, "u_weight")
    start = (1 << 40) + 12345
    assert np.array_equal(T.uniforms(T.key_tensor(key), 100, start=start).numpy(), C.uniforms(key, 100, start=start))


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_generation_equals_whole(shards):
    kt = T.key_tensor(C.stream_key(5, 9, 1, "xi"))
    n = 1000
    edges = np.linspace(0, n, shards + 1).astype(int)
    for draw in (T.uniforms, T.normals):
        for dtype in (torch.float64, torch.float32):
            whole = draw(kt, n, dtype=dtype)
            parts = [draw(kt, int(b - a), start=int(a), dtype=dtype) for a, b in zip(edges[:-1], edges[1:])]
            assert torch.equal(torch.cat(parts), whole)


def test_normals_within_the_documented_ulp_bound_of_refimpl():
    """float64: |Δz| <= 4 ulp(|z|) + 4·2^-53 (torch log/cos vs libm); float32: |Δz| <= 2^-18 (1 + |z|)."""
    for seed in range(3):
        key = C.stream_key(seed, 1, 2, "xi")
        kt = T.key_tensor(key)
        z = C.normals(key, 100_000)
        zt = T.normals(kt, 100_000).numpy()
        assert np.all(np.abs(zt - z) <= 4 * np.spacing(np.abs(z)) + 4 * 2.0**-53)
        z24 = C.normals(key, 100_000, bits=24)
        z32 = T.normals(kt, 100_000, dtype=torch.float32).double().numpy()
        assert np.all(np.abs(z32 - z24) <= 2.0**-18 * (1 + np.abs(z24)))


def test_compiled_counter_stream_equals_eager():
    """Under torch.compile (inductor C++ here) the integer ops give the same bits as eager."""
    def draw(key, x):
        return T.uniforms(key, x.numel(), dtype=x.dtype), T.normals(key, x.numel(), dtype=x.dtype)

    try:
        compiled = torch.compile(draw, dynamic=True)
        kt = T.key_tensor(C.stream_key(3, 4, 5, "xi"))
        x = torch.zeros(257, dtype=torch.float64)
        u_c, z_c = compiled(kt, x)
    except Exception as exc:  # pragma: no cover - no compiler on this machine
        pytest.skip(f"torch.compile unavailable: {type(exc).__name__}")
    u_e, z_e = draw(kt, x)
    assert torch.equal(u_c, u_e)
    assert torch.all((z_c - z_e).abs() <= 4 * torch.finfo(torch.float64).eps * (1 + z_e.abs()))

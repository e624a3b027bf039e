"""torchport.nn: activation/error quantizer (Q_A forward, Q_E backward, straight-through), model wrapping."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import torchport.quantize as tq
from refimpl.formats import BlockFloatingPoint, FixedPoint
from torchport.nn import Quantizer, insert_quantizers, quantizers_of

F64 = torch.float64


def _on_grid(t, delta):
    k = t / delta
    return torch.equal(k, torch.round(k))


def test_forward_quantizes_backward_quantizes_incoming_gradient():
    fmt_a, fmt_e = FixedPoint(8, 4), FixedPoint(8, 2)
    q = Quantizer(fmt_a, fmt_e, seed=0)
    x = torch.linspace(-3, 3, 101, dtype=F64, requires_grad=True)
    y = q(x)
    assert _on_grid(y.detach(), fmt_a.delta)
    upstream = torch.linspace(-1, 1, 101, dtype=F64) * 0.37
    y.backward(upstream)
    assert _on_grid(x.grad, fmt_e.delta)
    # straight-through: the gradient is Q_E(upstream), unbiased for the upstream gradient
    assert float((x.grad - upstream).abs().max()) <= fmt_e.delta


def test_exact_values_from_the_shared_generator():
    """exact=True: forward draws first, backward second, from the one generator (documented draw order)."""
    fmt = FixedPoint(8, 3)
    gen = torch.Generator().manual_seed(5)
    q = Quantizer(fmt, fmt, generator=gen, exact=True)
    x = torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=F64, requires_grad=True)
    up = torch.randn(40, generator=torch.Generator().manual_seed(2), dtype=F64)
    y = q(x)
    y.backward(up)
    g2 = torch.Generator().manual_seed(5)
    u1 = torch.rand(40, generator=g2, dtype=F64)
    u2 = torch.rand(40, generator=g2, dtype=F64)
    assert torch.equal(y.detach(), tq.stochastic_round(x.detach(), fmt, noise=u1, exact=True))
    assert torch.equal(x.grad, tq.stochastic_round(up, fmt, noise=u2, exact=True))


def test_identity_and_nearest_and_per_sample_bfp():
    x = torch.randn(4, 6, dtype=F64, requires_grad=True)
    assert Quantizer()(x) is x
    q = Quantizer(BlockFloatingPoint(8, 0), None, forward_rounding="nearest")
    y = q(x)
    assert torch.equal(y, tq.quantize(x.detach(), BlockFloatingPoint(8, 0)))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # no Q_E: pure straight-through


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs seed= .* or generator="):
        Quantizer("fixed:8:4")
    with pytest.raises(ValueError, match="forward_rounding"):
        Quantizer("fixed:8:4", seed=0, forward_rounding="up")
    with pytest.raises(ValueError, match="forward_format"):
        Quantizer("fixed:8", seed=0)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x)))).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("exact", [False, True])
def test_insert_quantizers_placement_and_training_step(exact):
    net = _Net().to(F64)
    insert_quantizers(net, "bfp:8:0", "bfp:8:0", seed=0, exact=exact)
    qs = quantizers_of(net)
    # after conv1, relu and fc1; not after bn1, the pool or the classifier fc2
    assert len(qs) == 3
    assert isinstance(net.conv1, nn.Sequential) and isinstance(net.relu, nn.Sequential)
    assert isinstance(net.fc2, nn.Linear) and isinstance(net.bn1, nn.BatchNorm2d)
    if exact:
        assert all(q.generator is qs[0].generator for q in qs)
    else:  # one counter seed, one index each
        assert [q.index for q in qs] == [0, 1, 2] and {q.seed for q in qs} == {0}
    insert_quantizers(net, "bfp:8:0", "bfp:8:0", seed=0, exact=exact)  # idempotent
    assert len(quantizers_of(net)) == 3
    x = torch.randn(5, 1, 6, 6, dtype=F64)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("exact", [False, True])
def test_generator_state_saved_with_the_model(exact):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(F64)
    insert_quantizers(net, "fixed:8:4", "fixed:8:4", seed=3, exact=exact)
    x = torch.randn(7, 3, dtype=F64)
    net(x)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    a = net(x)
    buf.seek(0)
    net.load_state_dict(torch.load(buf))
    assert torch.equal(net(x), a)


def test_seed_is_an_int_or_a_generator():
    """Quantizer/insert_quantizers, exact=True: seed=int is a fresh generator, seed=Generator is shared, generator=
    is the same thing; both at once, a float or a negative seed are refused (issue 13)."""
    x = torch.linspace(-1, 1, 12, dtype=torch.float64)
    a = Quantizer(FixedPoint(8, 3), seed=5, exact=True)(x)
    b = Quantizer(FixedPoint(8, 3), seed=torch.Generator().manual_seed(5), exact=True)(x)
    c = Quantizer(FixedPoint(8, 3), generator=torch.Generator().manual_seed(5), exact=True)(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    g = torch.Generator().manual_seed(5)
    model = insert_quantizers(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), FixedPoint(8, 3), seed=g,
                              exact=True)
    assert all(q.generator is g for q in quantizers_of(model))
    for bad, exc in (({"seed": 1.5}, TypeError), ({"seed": -1}, ValueError), ({"seed": True}, TypeError),
                     ({"seed": 1, "generator": g}, ValueError)):
        with pytest.raises(exc, match="seed"):
            Quantizer(FixedPoint(8, 3), **bad)


# ------------------------------------------------------------------ the default (counter-stream) path
def test_default_path_streams_are_the_quantize_streams_keyed_by_call_and_index():
    """Call c of a quantizer with index i: forward = quantize(x, seed, step=c, index=i) (stream u_weight),
    backward = the u_grad stream of the same key; the call counter is a buffer; the backward keys are
    those of its own forward call, whatever the order of the backward passes."""
    import torchport.fast as F

    fmt = FixedPoint(8, 3)
    q = Quantizer(fmt, fmt, seed=11, index=4)
    assert q.generator is None and q.seed == 11 and "calls" in dict(q.named_buffers())
    for dtype in (F64, torch.float32):
        q.calls.zero_()
        xs = [torch.randn(40, generator=torch.Generator().manual_seed(c), dtype=dtype, requires_grad=True)
              for c in range(2)]
        ups = [torch.randn(40, generator=torch.Generator().manual_seed(10 + c), dtype=dtype) for c in range(2)]
        ys = [q(x) for x in xs]
        assert int(q.calls) == 2
        for c in (1, 0):  # backward in reverse order
            ys[c].backward(ups[c])
        for c in range(2):
            assert torch.equal(ys[c].detach(), tq.quantize(xs[c].detach(), fmt, "stochastic", seed=11, step=c,
                                                           index=4))
            assert torch.equal(xs[c].grad, F.stochastic_round_fast(ups[c], fmt, seed=11, step=c, param_index=4,
                                                                   stream="u_grad"))
        assert not torch.equal(ys[0].detach(), tq.quantize(xs[0].detach(), fmt, "stochastic", seed=11, step=0,
                                                           index=3))  # another index, other bits


def test_default_path_resume_continues_the_stream_bit_for_bit():
    """state_dict holds the call counters and the counter seed: a model built with another seed and loaded
    from the saved state continues exactly as the uninterrupted run."""
    def build(seed):
        torch.manual_seed(0)  # the Linear init only (the quantizers never use the global RNG)
        net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).to(F64)
        return insert_quantizers(net, "fixed:8:4", "fixed:8:3", seed=seed)

    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=F64)

    def run(net, n):
        outs = []
        for _ in range(n):
            net.zero_grad()
            y = net(x)
            y.sum().backward()
            outs.append((y.detach().clone(), net[0][0].weight.grad.clone()))
        return outs

    straight = build(torch.Generator().manual_seed(3))
    first = run(straight, 3)
    buf = io.BytesIO()
    torch.save(straight.state_dict(), buf)
    rest = run(straight, 2)
    buf.seek(0)
    resumed = build(12345)
    resumed.load_state_dict(torch.load(buf))
    assert [int(q.calls) for q in quantizers_of(resumed)] == [3, 3]
    assert {q.seed for q in quantizers_of(resumed)} == {quantizers_of(straight)[0].seed}
    again = run(resumed, 2)
    assert all(torch.equal(a, b) for pa, pb in zip(rest, again) for a, b in zip(pa, pb))
    assert not torch.equal(first[0][0], first[1][0])  # successive calls draw fresh noise


def test_default_path_state_of_the_other_path_is_refused():
    fast, exact = Quantizer(FixedPoint(8, 3), seed=1), Quantizer(FixedPoint(8, 3), seed=1, exact=True)
    with pytest.raises(ValueError, match="exact=True"):
        fast.set_extra_state(exact.get_extra_state())
    with pytest.raises(ValueError, match="exact=False"):
        exact.set_extra_state(fast.get_extra_state())
    with pytest.raises(ValueError, match="seed=-1"):
        fast.set_extra_state({"counter_seed": -1, "index": 0})
    assert fast.seed == 1 and fast.index == 0


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", [FixedPoint(8, 3), BlockFloatingPoint(8, 0), "float:5:2", "ieee:float8_e4m3fn",
                                 "mxfp8_e4m3"])
def test_nearest_quantizer_is_the_same_on_both_paths(fmt, dtype):
    x = (torch.randn(6, 32, generator=torch.Generator().manual_seed(0), dtype=F64) * 3).to(dtype)
    x.requires_grad_(True)
    up = torch.randn(6, 32, generator=torch.Generator().manual_seed(1), dtype=F64).to(dtype)
    grads = []
    for exact in (False, True):
        q = Quantizer(fmt, fmt, forward_rounding="nearest", backward_rounding="nearest", exact=exact)
        x.grad = None
        y = q(x)
        y.backward(up)
        grads.append((y.detach(), x.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def _sr_mean_check(quantize_fn, n=200_000):
    """E Q^s(x) = x for Q_A (forward) and Q_E (backward) at x = 0.3 on FixedPoint(8, 3) (p = frac(0.3/Δ) = 0.4):
    |mean - x| <= 4 MCSE + 2^-24 Δ (the k-bit rule's bias bound, k = 24 in float32), MCSE = sqrt(p(1-p)/n)·Δ.
    Returns (forward ok, backward ok)."""
    fmt = FixedPoint(8, 3)
    x = torch.full((n,), 0.3, dtype=torch.float32, requires_grad=True)
    y = quantize_fn(x, fmt)
    y.backward(torch.full((n,), 0.3, dtype=torch.float32))
    tol = 4 * math.sqrt(0.4 * 0.6 / n) * fmt.delta + 2.0**-24 * fmt.delta
    return (abs(float(y.detach().double().mean()) - 0.3) <= tol, abs(float(x.grad.double().mean()) - 0.3) <= tol)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_default_path_stochastic_rounding_is_unbiased(seed):
    assert _sr_mean_check(lambda x, fmt: Quantizer(fmt, fmt, seed=seed)(x)) == (True, True)


def test_a_biased_stochastic_rounding_fails_the_unbiasedness_check(monkeypatch):
    """Mutation: the same counter uniforms with P(up) lowered by 0.01 fails in both directions."""
    from torchport import counter_rng as cr

    def biased(t, f, key):
        u = cr.uniforms(key, t.numel(), dtype=t.dtype).reshape(t.shape)
        z = t / f.delta
        return (torch.floor(z) + (u + 0.01 < z - torch.floor(z)).to(t.dtype)) * f.delta

    monkeypatch.setattr(tq, "_sr_keyed", biased)
    assert _sr_mean_check(lambda x, fmt: Quantizer(fmt, fmt, seed=7)(x)) == (False, False)


def test_insert_quantizers_default_path_draws_one_seed_and_continues_the_indices():
    from torchport.optim._fastpath import counter_seed

    g = torch.Generator().manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2)).to(F64)
    insert_quantizers(net, "fixed:8:4", "fixed:8:4", generator=g, after=(nn.ReLU,))
    ref = torch.Generator().manual_seed(4)
    assert [q.seed for q in quantizers_of(net)] == [counter_seed(ref)]
    assert torch.equal(g.get_state(), ref.get_state())  # one integer drawn for the whole model
    s0 = quantizers_of(net)[0].seed
    insert_quantizers(net, "fixed:8:4", "fixed:8:4", seed=9)  # the two Linears before the classifier
    # module order: Linear(3, 4) (new, index 1), the ReLU (index 0, untouched), Linear(4, 4) (new, index 2)
    assert [(q.seed, q.index) for q in quantizers_of(net)] == [(9, 1), (s0, 0), (9, 2)]

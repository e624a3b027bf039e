"""torchport.nn: activation/error quantizer (Q_A forward, Q_E backward, straight-through), model wrapping."""

from __future__ import annotations

import io

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
    """Forward draws first, backward second, from the one generator (documented draw order)."""
    fmt = FixedPoint(8, 3)
    gen = torch.Generator().manual_seed(5)
    q = Quantizer(fmt, fmt, generator=gen)
    x = torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=F64, requires_grad=True)
    up = torch.randn(40, generator=torch.Generator().manual_seed(2), dtype=F64)
    y = q(x)
    y.backward(up)
    g2 = torch.Generator().manual_seed(5)
    u1 = torch.rand(40, generator=g2, dtype=F64)
    u2 = torch.rand(40, generator=g2, dtype=F64)
    assert torch.equal(y.detach(), tq.stochastic_round(x.detach(), fmt, noise=u1))
    assert torch.equal(x.grad, tq.stochastic_round(up, fmt, noise=u2))


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


def test_insert_quantizers_placement_and_training_step():
    net = _Net().to(F64)
    insert_quantizers(net, "bfp:8:0", "bfp:8:0", seed=0)
    qs = quantizers_of(net)
    # after conv1, relu and fc1; not after bn1, the pool or the classifier fc2
    assert len(qs) == 3
    assert isinstance(net.conv1, nn.Sequential) and isinstance(net.relu, nn.Sequential)
    assert isinstance(net.fc2, nn.Linear) and isinstance(net.bn1, nn.BatchNorm2d)
    assert all(q.generator is qs[0].generator for q in qs)
    insert_quantizers(net, "bfp:8:0", "bfp:8:0", seed=0)  # idempotent
    assert len(quantizers_of(net)) == 3
    x = torch.randn(5, 1, 6, 6, dtype=F64)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_generator_state_saved_with_the_model():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(F64)
    insert_quantizers(net, "fixed:8:4", "fixed:8:4", seed=3)
    x = torch.randn(7, 3, dtype=F64)
    net(x)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    a = net(x)
    buf.seek(0)
    net.load_state_dict(torch.load(buf))
    assert torch.equal(net(x), a)


def test_seed_is_an_int_or_a_generator():
    """Quantizer/insert_quantizers: seed=int is a fresh generator, seed=Generator is shared, generator= is the
    same thing; both at once, a float or a negative seed are refused (issue 13)."""
    x = torch.linspace(-1, 1, 12, dtype=torch.float64)
    a = Quantizer(FixedPoint(8, 3), seed=5)(x)
    b = Quantizer(FixedPoint(8, 3), seed=torch.Generator().manual_seed(5))(x)
    c = Quantizer(FixedPoint(8, 3), generator=torch.Generator().manual_seed(5))(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    g = torch.Generator().manual_seed(5)
    model = insert_quantizers(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), FixedPoint(8, 3), seed=g)
    assert all(q.generator is g for q in quantizers_of(model))
    for bad, exc in (({"seed": 1.5}, TypeError), ({"seed": -1}, ValueError), ({"seed": True}, TypeError),
                     ({"seed": 1, "generator": g}, ValueError)):
        with pytest.raises(exc, match="seed"):
            Quantizer(FixedPoint(8, 3), **bad)

"""CTLD under data-parallel training: two gloo ranks on the CPU (127.0.0.1 only).

Each rank sees its own half of the data, so its potential Ũ and gradient differ.
Gradients are averaged as DDP does (all_reduce, then / world size); CTLD averages
Ũ itself.  After the run every rank must hold bitwise-identical parameters, α and
bias histogram, equal to one process that uses the averaged potential and gradient.
Exact path: CTLD also copies rank 0's generator state at the first step, so the ranks
may be seeded differently.  Default (fast) path: no copy is needed -- every rank is
given the same seed and computes the same counter keys.  The mutation (CTLD's
synchronisation switched off) must be caught on both paths: the ranks drift apart.
"""

from __future__ import annotations

import os

import pytest
import torch

from torchport import distributed as tdist
from torchport.optim import CTLD
from torchport.optim import ctld as tctld

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

F64 = torch.float64
STEPS = 40
CENTRES = (torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=F64), torch.tensor([-1.0, 0.0, 2.5, -3.0, 1.0], dtype=F64))
OPTIONS = dict(lr=0.05, temperature=1.0, eta_alpha=0.05, c_alpha=0.2, n_bins=10)


def _local(theta, rank):
    """Ũ_r(θ) = ½‖θ − c_r‖² and its gradient on rank r's data."""
    d = theta - CENTRES[rank]
    return float(0.5 * (d * d).sum()), d.clone()


def _worker(rank, world, port, out_dir, synchronised, exact):
    torch.set_num_threads(1)
    tdist.init_local_process_group(rank, world, port)
    try:
        if not synchronised:  # mutation: CTLD believes it runs alone
            tctld._distributed = lambda: False
        p = torch.nn.Parameter(torch.zeros(5, dtype=F64))
        # exact path: seeds differ on purpose (CTLD must align the generators); default path: one seed for all
        opt = CTLD([p], seed=rank if exact else 0, exact=exact, **OPTIONS)
        for _ in range(STEPS):
            U, g = _local(p.detach(), rank)
            torch.distributed.all_reduce(g)  # what DDP does to the gradients
            p.grad = g / world
            opt.step(potential=U)
        extra = opt.state_dict()["extra_state"]  # floats on both paths
        torch.save({"params": p.detach().clone(), "alpha": opt.alpha, "counts": extra["counts"],
                    "ubar": extra["ubar"]}, os.path.join(out_dir, f"rank{rank}.pt"))
        torch.distributed.barrier()  # no rank tears the group down while another still uses it
    finally:
        torch.distributed.destroy_process_group()


def _run(tmp_path, synchronised, exact):
    out = tmp_path / ("sync" if synchronised else "mutant")
    out.mkdir()
    torch.multiprocessing.spawn(_worker, args=(2, tdist.free_port(), str(out), synchronised, exact), nprocs=2,
                                join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _single_process(exact):
    """One process with the averaged potential and gradient, seeded as rank 0."""
    p = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    opt = CTLD([p], seed=0, exact=exact, **OPTIONS)
    for _ in range(STEPS):
        (u0, g0), (u1, g1) = _local(p.detach(), 0), _local(p.detach(), 1)
        p.grad = (g0 + g1) / 2
        opt.step(potential=(u0 + u1) / 2)
    return p.detach().clone(), opt.alpha, opt.state_dict()["extra_state"]["counts"]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "default"])
def test_ctld_ranks_stay_identical_and_equal_one_process(tmp_path, exact):
    r0, r1 = _run(tmp_path, synchronised=True, exact=exact)
    assert torch.equal(r0["params"], r1["params"])
    assert r0["alpha"] == r1["alpha"] and r0["counts"] == r1["counts"] and r0["ubar"] == r1["ubar"]
    params, alpha, counts = _single_process(exact)
    assert torch.equal(params, r0["params"]) and alpha == r0["alpha"] and counts == r0["counts"]
    assert alpha != 0.0 and sum(counts) > 0  # α moved and the histogram filled: the check has teeth

    m0, m1 = _run(tmp_path, synchronised=False, exact=exact)  # mutation: no synchronisation
    assert not torch.equal(m0["params"], m1["params"])
    assert m0["alpha"] != m1["alpha"]

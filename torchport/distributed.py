"""Multi-process (DDP) sampling: every rank must inject the *same* noise.

Why.  Under ``torch.nn.parallel.DistributedDataParallel`` each rank holds a replica of θ and
DDP all-reduces (averages) the gradients, so every rank sees the same gradient ĝ of the
global minibatch.  A Langevin step θ ← θ − lr·ĝ + σ·ξ is a *single* Markov chain only if ξ is
the same on every rank.  If each rank drew its own ξ_r the replicas would drift apart (DDP
never re-synchronises parameters after construction), and whichever replica is saved would
follow a chain whose gradient comes from the other replicas' positions — not the sampler of
(S1)–(S6).  Averaging the noise instead is also wrong: the mean of W independent ξ_r has
variance 1/W, so the chain would be too cold by a factor W.

Default (fast) path: nothing to synchronise.  The SGLD/SGHMC optimizers' default path
(``exact=False``, :mod:`torchport.fast`) draws every random number from the counter stream,
a pure function of (seed, step, parameter index, stream, element index).  Every rank builds
its optimizer with the same integer seed (:mod:`torchport.train` derives it from the run
seed), counts the same steps and sees the same parameters, so every rank computes the same
keys and the same noise: no generator state exists and none is broadcast.  The broken
scheme (each rank its own noise) is a per-rank seed (``optimizer.reseed``), kept to test the
replica check.  Tested: 1 and 2 gloo ranks give bitwise-identical parameters
(tests/torchport/test_distributed.py, tests/torchport/test_default_path.py).

Mechanism of the exact path (``exact=True``; identical generators, identical draw order).

1. Every rank builds its optimizer with the same seed (:mod:`torchport.train` derives it from
   the run seed, not from the rank), so every rank's ``torch.Generator`` starts in the same
   state.  :func:`broadcast_generator_state` additionally copies rank 0's generator state
   to all ranks, so the scheme holds even if a caller seeded ranks differently.
2. The torchport optimizers draw the noise of a step as one flat vector per noise stream,
   in parameter order, over the parameters that have a gradient
   (``torchport.optim._base.NoisyOptimizer``).  DDP gives every rank the same parameters with
   the same gradients, so every rank draws the same number of variates in the same order,
   and stochastic rounding (Q_W, Q_G, Q^vc) uses the same uniforms everywhere.  The noise is
   drawn on the CPU generator and then moved to the parameter's device, so ranks on
   different GPUs also agree.
3. Hence the update is a deterministic function of (θ, ĝ, generator state), all three equal
   on every rank: the replicas stay bitwise identical with no extra communication.
   :func:`replicas_identical` checks this (rank 0 broadcasts its parameters; every rank
   compares bitwise), and the test suite runs it after N steps with the gloo backend.

This module holds the collectives only and imports nothing of the driver: :mod:`torchport.train`
imports it, and :mod:`torchport.ddp` (which launches ``train`` on W local processes) imports
both, so there is no import cycle.

The alternative, rank 0 drawing and broadcasting ξ, costs one extra broadcast of d numbers
per step and is not needed when the generators agree.

Equality with one process.  DDP's gradient is ĝ = Σ_r g_r/W (each g_r the mean-loss
gradient on rank r's contiguous shard of the global batch).  For W = 2 the all-reduce sum is
a single IEEE addition (commutative, hence identical on both ranks) and division by W = 2 is
exact, so a single process that back-propagates the shards one after the other (gradients
accumulate as g_0 + g_1) and divides by 2 (``TrainConfig.grad_shards = 2``) computes the
same bits; the test asserts bitwise equality of the final parameters.  For W > 2 the
all-reduce order is backend-specific and agreement is to rounding only.

Limitations.  Activation/error quantizers (``--act-format``) draw per-rank noise for
per-rank activations; this is a different (still valid) gradient estimator, not equal to
the single-process one.  BatchNorm statistics are per rank (no SyncBatchNorm).
"""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a local process group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_local_process_group(rank: int, world_size: int, port: int, backend: str = "gloo") -> None:
    """Initialise the default process group over TCP on 127.0.0.1 (single machine only)."""
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{int(port)}", rank=rank, world_size=world_size)


def _comm_device() -> torch.device:
    """Device for collective buffers: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_generator_state(generator: torch.Generator, src: int = 0) -> None:
    """Copy ``src``'s generator state to every rank (collective; any backend)."""
    dev = _comm_device()
    state = generator.get_state()
    size = torch.tensor([state.numel()], dtype=torch.int64, device=dev)
    dist.broadcast(size, src)
    if dist.get_rank() != src:
        state = torch.zeros(int(size), dtype=torch.uint8)
    buf = state.to(device=dev, dtype=torch.int64)  # int64: uint8 broadcast is not supported everywhere
    dist.broadcast(buf, src)
    generator.set_state(buf.to(device="cpu", dtype=torch.uint8))


@torch.no_grad()
def replicas_identical(module: torch.nn.Module, src: int = 0) -> bool:
    """True on every rank iff all ranks hold bitwise-identical parameters (collective).

    Rank ``src`` broadcasts its flattened parameters; each rank compares bitwise (NaNs
    compare equal to themselves via the bit pattern) and the flags are all-reduced with MIN.
    """
    dev = _comm_device()
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()]).to(dev)
    ref = flat.clone()
    dist.broadcast(ref, src)
    same = torch.tensor([1 if torch.equal(flat.view(torch.int64), ref.view(torch.int64)) else 0],
                        dtype=torch.int64, device=dev)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())

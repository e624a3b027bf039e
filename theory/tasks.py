"""Grid-point tasks: ``qlangevin verify``'s sampler work on a process pool or a Dask cluster.

A claim's experiment draws every sample through :func:`theory.experiments.law_at_step`
or :func:`~theory.experiments.law_path`; each such call is one *grid-point task*
(one method at one parameter point, many chains).  A run has three phases:

1. **plan** -- each claim runs with a :class:`PlanningSampler`, which records the
   tasks and hands back small surrogate arrays so the claim's code runs through;
   its judged rows are counted, so the number of judged checks of the whole run
   (the family of the Šidák correction, ``Context.family_size``) is known before
   anything is judged;
2. **execute** -- the distinct tasks run in this process, on a local process pool
   (``workers > 1``) or on a Dask cluster (``scheduler``), longest first;
3. **replay** -- as soon as all tasks of a claim are done, the claim runs again in
   this process with a :class:`ReplaySampler` that returns the tasks' results, and
   judges at the threshold of family-wise α over that exact count.

A task's result depends only on its arguments (its seed is one of them), so the
numbers are identical whatever the worker count or scheduler.  A call the plan did
not foresee (a claim whose draws depend on earlier results) runs inline during the
replay and is counted in the report (``tasks.inline``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from distributed import Client

    from refimpl.targets import Target
    from theory.claims import Claim

__all__ = ["FamilySizeError", "Task", "PlanningSampler", "ReplaySampler", "execute_task", "run_claims"]

_SURROGATE_ROWS = 64


class FamilySizeError(ValueError):
    """A ``family_size`` below the number of judged checks the run counted (or not an int)."""


class Task(NamedTuple):
    """One grid-point task: ``law_at_step``, ``law_path`` or ``final_state`` with its arguments."""

    kind: str
    method: str
    target: Any
    kwargs: dict
    key: str
    cost: float

    def label(self) -> str:
        kw = self.kwargs
        steps = kw.get("n_steps", max(kw.get("steps", [0]) or [0]))
        return f"{self.method} n={kw.get('n_chains')} k={steps}"


def _key(kind: str, method: str, target, kwargs: dict) -> str:
    parts = [kind, str(method), repr(target)] + [f"{k}={kwargs[k]!r}" for k in sorted(kwargs)]
    return "|".join(parts)


def _make_task(kind, method, target, kwargs) -> Task:
    kw = dict(kwargs)
    steps = max(kw["steps"]) if kind == "law_path" else kw.get("n_steps")
    cost = float(kw["n_chains"]) * float(steps) * float(kw.get("dim", 1))
    return Task(kind, str(method), target, kw, _key(kind, method, target, kw), cost)


class PlanningSampler:
    """Records the tasks of a claim; returns small surrogate draws (N(0, 1), ≤ 64 chains)."""

    def __init__(self):
        self.tasks: dict[str, Task] = {}
        self._rng = np.random.default_rng(0)

    def _record(self, task: Task):
        self.tasks.setdefault(task.key, task)

    def task_law_at_step(self, method: str, target: str | Target, **kw: Any) -> np.ndarray:
        self._record(_make_task("law_at_step", method, target, kw))
        return self._rng.standard_normal((min(int(kw["n_chains"]), _SURROGATE_ROWS), int(kw.get("dim", 1))))

    def task_law_path(self, method: str, target: str | Target, **kw: Any) -> np.ndarray:
        self._record(_make_task("law_path", method, target, kw))
        return self._rng.standard_normal((len(kw["steps"]), min(int(kw["n_chains"]), _SURROGATE_ROWS), int(kw.get("dim", 1))))

    def task_final_state(self, method: str, target: str | Target, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        self._record(_make_task("final_state", method, target, kw))
        rows = min(int(kw["n_chains"]), _SURROGATE_ROWS)
        return self._rng.standard_normal((rows, int(kw.get("dim", 1)))), np.zeros((rows, int(kw["state_width"])))

    def __call__(self, *args, **kwargs):
        raise RuntimeError("claims draw through theory.experiments.law_at_step / law_path / final_state (grid-point tasks)")


class ReplaySampler:
    """Returns the executed tasks' results; runs an unforeseen task inline with ``fallback``."""

    def __init__(self, results: dict, fallback: Callable):
        self.results = results
        self.fallback = fallback
        self.inline = 0

    def _get(self, task: Task):
        if task.key in self.results:
            res = self.results[task.key]
        else:
            self.inline += 1
            res = execute_task(task, self.fallback)
        if isinstance(res, BaseException):
            raise res
        if isinstance(res, tuple):
            return tuple(np.array(r, copy=True) for r in res)
        return np.array(res, copy=True)

    def task_law_at_step(self, method: str, target: str | Target, **kw: Any) -> np.ndarray:
        return self._get(_make_task("law_at_step", method, target, kw))

    def task_law_path(self, method: str, target: str | Target, **kw: Any) -> np.ndarray:
        return self._get(_make_task("law_path", method, target, kw))

    def task_final_state(self, method: str, target: str | Target, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._get(_make_task("final_state", method, target, kw))

    def __call__(self, *args, **kwargs):
        return self.fallback(*args, **kwargs)


def execute_task(task: Task,
                 sampler: Callable | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray] | Exception:
    """Run one task with ``sampler`` (default ``refimpl.sample``); returns the draws or the exception raised."""
    from theory import experiments as E

    if sampler is None:
        sampler = E.default_sampler()
    try:
        fn = {"law_at_step": E.law_at_step, "law_path": E.law_path, "final_state": E.final_state}[task.kind]
        return fn(sampler, task.method, task.target, **task.kwargs)
    except Exception as exc:  # delivered to the claim, which reports an error
        return exc


@dataclass
class _ClaimState:
    claim: Any
    keys: set = field(default_factory=set)
    tasks: dict = field(default_factory=dict)
    plan_error: str | None = None
    #: judged rows of the planning pass (0 when planning raised)
    planned_checks: int = 0


def run_claims(claims: Sequence[Claim], *, mode: str, seed: int, figures_dir: str | os.PathLike[str],
               sampler: Callable | None = None, workers: int = 1, scheduler: str | Client | None = None,
               progress: bool = False, log: Callable[[str], None] | None = None,
               family_size: int | None = None) -> tuple[list, dict]:
    """Plan, execute and replay ``claims``; returns (report entries in claim order, task statistics).

    ``family_size``: judge over this many checks instead of the count of this run (a run split
    into ``--only`` shards gives each shard the whole run's count); at least the count.

    The statistics include ``family_size`` (judged checks counted while planning: the
    Šidák family every claim is judged over) and ``planned_checks`` per Monte Carlo claim
    (claims with ``monte_carlo=False`` judge deterministically and are not in the family).

    ``sampler``: None for ``refimpl.sample``; an injected sampler (tests) runs in this
    process unless a ``scheduler`` is given.  ``workers``: local processes (1: this
    process).  ``scheduler``: a ``dask.distributed`` scheduler address, or a Client.
    """
    from theory.claims import Context
    from theory.report import run_claim

    states = []
    for c in claims:  # 1. plan
        plan = PlanningSampler()
        st = _ClaimState(c)
        try:
            planned = c.run(Context(sampler=plan, mode=mode, seed=seed, figures_dir=None, planning=True))
            st.planned_checks = sum(1 for m in planned.measurements if m.passed is not None)
        except Exception as exc:  # the replay reports it; tasks recorded so far still run
            st.plan_error = f"{type(exc).__name__}: {exc}"
        st.keys = set(plan.tasks)
        st.tasks = plan.tasks
        states.append(st)
    # the Šidák family: every judged check with Monte Carlo error in the run, counted before any is judged
    # (deterministic claims, Claim.monte_carlo False, cannot raise a false alarm; ≥ 1 so the threshold is defined)
    counted = sum(st.planned_checks for st in states if st.claim.monte_carlo)
    if family_size is not None:
        if isinstance(family_size, bool) or not isinstance(family_size, int) or family_size < max(1, counted):
            raise FamilySizeError(f"family_size must be an int >= the run's {counted} judged checks, got {family_size!r}")
    family_size = int(family_size) if family_size is not None else max(1, counted)
    tasks: dict[str, Task] = {}
    for st in states:
        tasks.update(st.tasks)
    order = sorted(tasks.values(), key=lambda t: -t.cost)  # longest first: better packing
    users = {k: sum(k in st.keys for st in states) for k in tasks}
    results: dict[str, Any] = {}
    entries: dict[str, dict] = {}
    fallback = sampler
    if fallback is None:
        from theory.experiments import default_sampler

        fallback = default_sampler()
    inline = 0
    pool_ok = sampler is None or bool(getattr(sampler, "picklable", False))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(order), desc="verify", unit="task", file=sys.stderr)

    def replay_ready():
        nonlocal inline
        for st in states:
            if st.claim.id in entries or not st.keys <= results.keys():
                continue
            rs = ReplaySampler(results, fallback)
            entries[st.claim.id] = run_claim(st.claim, Context(sampler=rs, mode=mode, seed=seed, figures_dir=figures_dir,
                                                               family_size=family_size))
            inline += rs.inline
            for k in st.keys:  # free what no other claim needs
                users[k] -= 1
                if users[k] == 0:
                    results.pop(k, None)
            if bar is not None:
                bar.set_postfix_str(f"{st.claim.id}: {entries[st.claim.id]['verdict']}")
            if log is not None:
                log(f"{st.claim.id}: {entries[st.claim.id]['verdict']}")

    def done(task: Task, res):
        results[task.key] = res
        if bar is not None:
            bar.set_description_str(f"verify {task.label()}"[:48])
            bar.update(1)
        replay_ready()

    # claims without tasks (AskewSGD; mnist-lp, which trains here) run once the pool or cluster has its tasks,
    # so that this process's own work overlaps with the workers'
    if scheduler is not None:
        from distributed import Client, as_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            futs = {client.submit(execute_task, t, sampler, pure=False, priority=i): t for i, t in enumerate(reversed(order))}
            replay_ready()
            for fut, res in as_completed(list(futs), with_results=True):
                done(futs[fut], res)
        finally:
            if client is not scheduler:
                client.close()
    elif pool_ok and workers > 1 and order:
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures import as_completed as cf_completed

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            futs = {pool.submit(execute_task, t, sampler): t for t in order}
            replay_ready()
            for fut in cf_completed(futs):
                done(futs[fut], fut.result())
    else:
        replay_ready()
        for t in order:
            done(t, execute_task(t, sampler))
    if bar is not None:
        bar.close()
    replay_ready()
    stats = {"tasks": len(order), "inline": inline, "workers": int(workers),
             "scheduler": "dask" if scheduler is not None else ("process-pool" if (pool_ok and workers > 1) else "in-process"),
             "family_size": family_size, "counted_checks": counted, "planned_checks": {st.claim.id: st.planned_checks for st in states if st.claim.monte_carlo}}
    return [entries[c.id] for c in claims], stats

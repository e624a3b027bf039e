"""Grid-point tasks (theory.tasks): the same numbers in this process, on a local pool and on a Dask cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from theory_toy_sampler import (
    make_toy_sampler,  # tests/theory is on sys.path (pytest rootdir import mode)
)

from theory import cli_verify
from theory.claims import get_claims
from theory.tasks import PlanningSampler

IDS = ["sghmc-moments", "lpf-bias-vanishes"]
HERE = Path(__file__).resolve().parent


def _numbers(report):
    return [(c["id"], c["verdict"], c["publication"]["verdict"],
             [(m["label"], m["value"], m["se"], m["passed"]) for m in c["measurements"]]) for c in report["claims"]]


def _run(tmp_path, name, **kw):
    return cli_verify.verify(get_claims(IDS), mode="tiny", seed=5, out_dir=tmp_path / name, sampler=make_toy_sampler(),
                             progress=False, **kw)


def test_plan_records_every_grid_point():
    from theory.claims import CLAIMS, Context

    plan = PlanningSampler()
    CLAIMS["sghmc-moments"].run(Context(sampler=plan, mode="tiny", seed=0, planning=True))
    assert len(plan.tasks) == 4  # 2 methods × 2 signs, one law_path task each
    assert all(t.kind == "law_path" for t in plan.tasks.values())


def test_same_numbers_in_process_and_on_a_local_pool(tmp_path):
    one = _run(tmp_path, "one", workers=1)
    two = _run(tmp_path, "two", workers=2)
    assert one["scheduler"] == "in-process" and two["scheduler"] == "process-pool"
    assert _numbers(one) == _numbers(two)
    assert one["tasks"]["tasks"] >= 8 and one["tasks"]["inline"] == 0


def test_same_numbers_on_a_two_worker_dask_local_cluster(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    # spawned workers import the test double from this folder and the packages from the checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    one = _run(tmp_path, "one", workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            dask = _run(tmp_path, "dask", scheduler=client)
            assert len(client.scheduler_info()["workers"]) == 2
    assert dask["scheduler"] == "dask"
    assert _numbers(one) == _numbers(dask)

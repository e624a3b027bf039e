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


def test_family_is_the_exact_count_of_judged_checks(tmp_path):
    """The Šidák family is counted while planning (before anything is judged) and equals the judged count."""
    from theory.experiments import family_alpha, family_z

    rep = _run(tmp_path, "count", workers=1)
    per_claim = {c["id"]: sum(m["passed"] is not None for m in c["measurements"]) for c in rep["claims"]}
    st = rep["statistics"]
    assert rep["tasks"]["planned_checks"] == per_claim  # the planning pass saw every judged row
    assert st["family_size"] == st["family_checks"] == st["judged_checks"] == sum(per_claim.values())
    assert st["count_mismatch"] == {} and st["deterministic_checks"] == 0
    assert abs(st["z_threshold"] - family_z(st["family_size"])) < 1e-12
    assert abs(st["family_alpha_actual"] - 0.01) < 1e-9
    # the claims judged at that threshold: sghmc-moments' rows allow exactly z·SE (no model error)
    (moments,) = [c for c in rep["claims"] if c["id"] == "sghmc-moments"]
    row = next(m for m in moments["measurements"] if m["passed"] is not None and m["se"])
    assert abs(row["tolerance"] - st["z_threshold"] * row["se"]) < 1e-12 * max(1.0, row["tolerance"])
    # a claim judged alone has a smaller family, hence a lower threshold than both together
    alone = cli_verify.verify(get_claims(["sghmc-moments"]), mode="tiny", seed=5, out_dir=tmp_path / "alone",
                              sampler=make_toy_sampler(), progress=False)
    assert alone["statistics"]["family_size"] == per_claim["sghmc-moments"]
    assert alone["statistics"]["z_threshold"] < st["z_threshold"]
    # the bookkeeping is not a tautology: a fixed budget of 300 would give a lower realised α
    assert family_alpha(family_z(300), st["judged_checks"]) < 0.009


def test_statistics_name_a_claim_whose_count_differs_from_the_plan():
    from theory.report import statistics_summary

    entries = [{"id": "a", "measurements": [{"passed": True}, {"passed": None}]},
               {"id": "b", "measurements": []}]  # b errored: planned 3 judged rows, judged none
    st = statistics_summary(entries, 4, {"a": 1, "b": 3})
    assert st["judged_checks"] == st["family_checks"] == 1 and st["family_size"] == 4
    assert st["count_mismatch"] == {"b": [3, 0]} and st["family_alpha_actual"] < 0.01
    # a deterministic claim (not in planned_checks) is counted as judged but not in the family
    det = entries + [{"id": "c", "measurements": [{"passed": True}, {"passed": False}]}]
    st = statistics_summary(det, 4, {"a": 1, "b": 3})
    assert st["judged_checks"] == 3 and st["family_checks"] == 1 and st["deterministic_checks"] == 2


def test_deterministic_claim_is_not_in_the_family():
    from theory.claims import CLAIMS

    assert CLAIMS["askewsgd-contraction"].monte_carlo is False  # no Monte Carlo error in its judged checks
    assert all(c.monte_carlo for cid, c in CLAIMS.items() if cid != "askewsgd-contraction")


def test_context_family_size_validated():
    from theory.claims import Context

    with pytest.raises(ValueError, match="family_size must be >= 1, got 0"):
        Context(sampler=make_toy_sampler(), mode="tiny", family_size=0)
    with pytest.raises(TypeError, match="family_size must be an int or None, got '12'"):
        Context(sampler=make_toy_sampler(), mode="tiny", family_size="12")


def test_family_size_of_a_shard(tmp_path, capsys):
    """A shard of a split run judges over the whole run's family; a family below the shard's own count is refused."""
    from qlangevin.cli import main
    from theory.experiments import family_z
    from theory.tasks import FamilySizeError

    rep = _run(tmp_path, "shard", family_size=696)
    st = rep["statistics"]
    assert st["family_size"] == 696 and abs(st["z_threshold"] - family_z(696)) < 1e-12
    assert rep["tasks"]["counted_checks"] == st["judged_checks"] and st["family_alpha_actual"] < 0.01
    with pytest.raises(FamilySizeError, match="family_size must be an int >= the run's"):
        _run(tmp_path, "small", family_size=1)
    rc = main(["verify", "--tiny", "--only", "askewsgd-contraction", "sghmc-moments", "--family-size", "2",
               "--out", str(tmp_path / "cli"), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("qlangevin verify: family_size must be an int >= the run's") and "\n" not in err

"""``qlangevin verify`` end to end on one tiny claim, the report schema, and the failing exit path."""

from __future__ import annotations

import json

import pytest
from theory_toy_sampler import (
    make_toy_sampler,  # tests/theory is on sys.path (pytest rootdir import mode)
)

from qlangevin.cli import main
from theory import cli_verify
from theory.claims import get_claims
from theory.experiments import family_z
from theory.report import SCHEMA

MEASUREMENT_KEYS = {"label", "parameters", "quantity", "value", "ci", "se", "prediction", "bound", "tolerance", "passed",
                    "mde", "mde_relative", "note"}
CLAIM_KEYS = {"id", "source", "statement", "experiment", "measured", "prediction", "pass_rule", "published", "verdict",
              "implementation", "publication", "duration_s", "error", "figures", "info", "diagnostics", "measurements"}
PUBLICATION_VERDICTS = {"yes", "partly", "no", "not checkable here"}


def test_verify_writes_report_with_schema(tmp_path):
    report = cli_verify.verify(get_claims(["sghmc-moments"]), mode="tiny", seed=3, out_dir=tmp_path,
                               sampler=make_toy_sampler(), progress=False)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data == json.loads(json.dumps(report))
    assert data["schema"] == SCHEMA and data["verdict"] == "pass" and data["mode"] == "tiny" and data["seed"] == 3
    (claim,) = data["claims"]
    assert set(claim) == CLAIM_KEYS and claim["verdict"] == "pass"
    for m in claim["measurements"]:
        assert set(m) == MEASUREMENT_KEYS
        assert isinstance(m["value"], float) and len(m["ci"]) == 2
    md = (tmp_path / "report.md").read_text()
    assert "sghmc-moments" in md and "PASS" in md
    # two verdicts: the implementation verdict never stands alone
    assert claim["implementation"] == claim["verdict"] and claim["publication"]["verdict"] in PUBLICATION_VERDICTS
    assert claim["publication"]["reason"]
    assert "implementation PASS · publication: " in md
    # stated power: every judged row with an SE has its minimum detectable effect
    for m in claim["measurements"]:
        if m["passed"] is not None and m["se"] is not None:
            assert m["mde"] is not None and m["mde"] > m["tolerance"]
    st = data["statistics"]
    # the Šidák family is the exact count of judged checks, known before judging: realised α = target
    n = sum(m["passed"] is not None for m in claim["measurements"])
    assert st["family_size"] == st["family_checks"] == st["judged_checks"] == n and st["count_mismatch"] == {}
    assert abs(st["family_alpha_actual"] - 0.01) < 1e-9 and abs(st["z_threshold"] - family_z(n)) < 1e-12
    # provenance, and no "nan" strings anywhere
    prov = data["provenance"]
    assert set(prov["versions"]) >= {"numpy", "numba", "scipy", "POT", "torch"}
    assert len(prov["kernel_source_hash"]) == 16 and prov["qlangevin_version"]
    assert '"nan"' not in (tmp_path / "report.json").read_text()


def test_no_stale_figures_survive(tmp_path):
    (tmp_path / "figures").mkdir()
    stale = tmp_path / "figures" / "from_an_earlier_run.png"
    stale.write_bytes(b"old")
    cli_verify.verify(get_claims(["sghmc-moments"]), mode="tiny", out_dir=tmp_path, sampler=make_toy_sampler(), progress=False)
    assert not stale.exists()


def test_console_summary_shows_both_verdicts(tmp_path, monkeypatch, capsys):
    import theory.experiments

    monkeypatch.setattr(theory.experiments, "default_sampler", lambda: make_toy_sampler())
    assert main(["verify", "--tiny", "--only", "sghmc-moments", "--out", str(tmp_path), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("sghmc-moments"))
    assert "PASS" in line and "partly" in line  # VC does not match the target: never a bare PASS
    assert "publication partly:" in out


def test_verify_figures_written(tmp_path):
    report = cli_verify.verify(get_claims(["sgld-overdispersion"]), mode="tiny", out_dir=tmp_path,
                               sampler=make_toy_sampler(), progress=False)
    figs = report["claims"][0]["figures"]
    assert figs and all((tmp_path / f).is_file() for f in figs)


def test_cli_exit_code_nonzero_when_a_claim_fails(tmp_path, monkeypatch):
    import theory.experiments

    monkeypatch.setattr(theory.experiments, "default_sampler", lambda: make_toy_sampler(flip_sign=True))
    rc = main(["verify", "--tiny", "--only", "sghmc-moments", "--out", str(tmp_path), "--workers", "1", "--no-progress"])
    assert rc == 1
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verdict"] == "fail" and data["claims"][0]["verdict"] == "fail"


def test_cli_exit_code_zero_when_all_pass(tmp_path, monkeypatch):
    import theory.experiments

    monkeypatch.setattr(theory.experiments, "default_sampler", lambda: make_toy_sampler())
    rc = main(["verify", "--tiny", "--only", "sghmc-moments", "--out", str(tmp_path), "--workers", "1", "--no-progress"])
    assert rc == 0


def test_cli_list_and_bad_only(capsys, tmp_path):
    assert main(["verify", "--list"]) == 0
    assert "lpsgld-bounds-d1" in capsys.readouterr().out
    assert main(["verify", "--only", "no-such-claim", "--out", str(tmp_path)]) == 2


def test_cli_quick_and_full_are_exclusive():
    try:
        rc = main(["verify", "--quick", "--full"])
    except SystemExit as exc:  # argparse's own exit
        rc = exc.code
    assert rc == 2


def test_family_threshold_and_mde():
    from scipy.stats import norm

    from theory.experiments import FAMILY_SIZE, family_alpha, family_z, mde

    for n in (1, 60, 300, 1000):
        z = family_z(n)
        assert abs(family_alpha(z, n) - 0.01) < 1e-9
    assert abs(family_z(FAMILY_SIZE["quick"]) - 4.148) < 1e-3
    assert family_z(1) < family_z(300) < family_z(1000)
    # MDE: a true deviation of exactly the MDE fails the check with probability 0.9 (normal approximation)
    se, z, me = 0.01, 4.0, 0.002
    d = mde(se, z, me)
    p_fail = norm.sf((z * se + me - d) / se)
    assert abs(p_fail - 0.9) < 1e-9
    with pytest.raises(ValueError, match="n_checks"):
        family_z(0)

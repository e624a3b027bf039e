"""The one-command GPU validation script runs end to end on the CPU (``--device cpu --tiny``).

So that the first GPU machine drawn spends its minutes on the run, not on debugging
(issue 11 item 6).  Writes into tmp_path, never into docs/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("torch")


def test_gpu_validate_cpu_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu.md"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_validate.py"), "--device", "cpu", "--tiny",
                          "--out", str(out), "--section-timeout", "600"], cwd=REPO, capture_output=True, text=True,
                         timeout=1200)  # a cold Numba cache makes the crosscheck section compile for minutes
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = out.read_text()
    for title in ("crosscheck", "quantizer throughput", "LP step vs fused SGD", "SmallCNN on MNIST",
                  "ResNet-50 on MNIST"):
        assert f"## {title}" in text
    assert "FAILED" not in text
    assert text.count("\nok (") == 5


def test_gpu_validate_refuses_cuda_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_validate.py"), "--out",
                          str(tmp_path / "x.md")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "CUDA is not available" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.md").exists()

"""The version lives in one place (qlangevin/__init__.py); everything else must agree with it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import qlangevin

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_version_from_the_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert re.search(r'^version\s*=\s*"', text, flags=re.M) is None  # no second copy


def test_citation_and_changelog_agree_with_the_package():
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version:\s*(\S+)", cff, flags=re.M).group(1) == qlangevin.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {qlangevin.__version__}" in changelog


def test_installed_metadata_matches():
    assert metadata.version("qlangevin") == qlangevin.__version__

"""The documentation resolves what the code cites (the site itself is built by .ci/run).

* Every equation label a docstring or comment in refimpl/, theory/ or torchport/ cites,
  (Q2'), (S6), (H4), (QS1), (C3), (A2), (B1), P0–P10, ..., is a heading (or anchor)
  in docs/spec/, so users can look it up: label (X) has the anchor ``x`` in lower case,
  a prime written ``prime`` ((Q2') -> ``q2prime``).
* Every "§N.M" section number cited in the code has a row in docs/spec/index.md.
* Every module the API pages render (``::: package.module``) exists, so a rename shows
  up here and not only in ``mkdocs build``.
* Every page in mkdocs.yml's nav exists, and every page under docs/ is in the nav.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("refimpl", "theory", "torchport")
SPEC = ROOT / "docs" / "spec"

LABEL = re.compile(r"\(((?:QS|Q|S|H|C|A|B|T)[0-9]+'?)\)")
PREDICTION = re.compile(r"\bP(10|[0-9])\b")
SECTION = re.compile(r"§([0-9]+(?:\.[0-9]+)*)")
ANCHOR = re.compile(r"\{#([A-Za-z0-9_-]+)\}|<a id=\"([A-Za-z0-9_-]+)\"")


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def anchor_of(label: str) -> str:
    """The docs/spec anchor of an equation label: (Q2') -> 'q2prime', P3 -> 'p3'."""
    return label.lower().replace("'", "prime")


def spec_anchors(spec_dir: Path = SPEC) -> set[str]:
    found = set()
    for page in spec_dir.glob("*.md"):
        for a, b in ANCHOR.findall(page.read_text(encoding="utf-8")):
            found.add(a or b)
    return found


def cited_labels() -> dict[str, set[str]]:
    """label -> files citing it."""
    cited: dict[str, set[str]] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for label in LABEL.findall(text):
            cited.setdefault(label, set()).add(str(path.relative_to(ROOT)))
        for number in PREDICTION.findall(text):
            cited.setdefault(f"P{number}", set()).add(str(path.relative_to(ROOT)))
    return cited


def unresolved(cited, anchors) -> list[str]:
    return sorted(f"{label} (cited in {min(files)})" for label, files in cited.items()
                  if anchor_of(label) not in anchors)


def test_every_cited_label_is_an_anchor_in_docs_spec():
    cited = cited_labels()
    assert len(cited) > 40, sorted(cited)          # the grep found the labels at all
    assert unresolved(cited, spec_anchors()) == []


def test_a_missing_anchor_is_reported(tmp_path):
    # mutation: a spec page without the (Q5) heading must make the check fail
    text = (SPEC / "quantizers.md").read_text(encoding="utf-8").replace("{#q5}", "")
    (tmp_path / "quantizers.md").write_text(text, encoding="utf-8")
    for page in SPEC.glob("*.md"):
        if page.name != "quantizers.md":
            (tmp_path / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    missing = unresolved(cited_labels(), spec_anchors(tmp_path))
    assert any(m.startswith("Q5 ") for m in missing), missing


def test_every_cited_section_has_a_row_in_the_spec_index():
    index = (SPEC / "index.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| §([0-9.]+)(?: – §([0-9.]+))? \|", index, flags=re.MULTILINE))
    listed = set()
    for first, last in rows:
        listed.add(first)
        if last:  # a range §3.2 – §3.6 on one row
            major, lo = first.rsplit(".", 1)
            hi = last.rsplit(".", 1)[1]
            listed.update(f"{major}.{k}" for k in range(int(lo), int(hi) + 1))
    missing = set()
    for path in _sources():
        for number in SECTION.findall(path.read_text(encoding="utf-8")):
            parts = number.rstrip(".").split(".")
            # §7.1.4 is found under §7.1; §5.3 under §5.3
            if not any(".".join(parts[:k]) in listed for k in range(len(parts), 0, -1)):
                missing.add(f"§{number} ({path.relative_to(ROOT)})")
    assert sorted(missing) == []


def _api_modules():
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for name in re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.MULTILINE):
            yield page.name, name


@pytest.mark.parametrize(("page", "module"), list(_api_modules()))
def test_api_pages_render_existing_modules(page, module):
    rel = Path(*module.split("."))
    assert (ROOT / f"{rel}.py").is_file() or (ROOT / rel / "__init__.py").is_file(), (page, module)


def test_nav_and_pages_agree():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.MULTILINE)
    docs = ROOT / "docs"
    assert [p for p in nav if not (docs / p).is_file()] == []
    pages = {str(p.relative_to(docs)) for p in docs.rglob("*.md")}
    assert sorted(pages - set(nav)) == []

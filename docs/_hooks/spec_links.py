"""mkdocs hook: turn the equation labels in rendered pages into links to docs/spec.

Docstrings cite equations as (Q5), (S6), (H4), (QS1), (C3), (A2), (B1), (T3) or P0–P10.
Every label is a heading with the anchor ``label.lower()`` (a prime spelled ``prime``)
on one of the docs/spec pages (tests/test_docs.py checks that each cited label has
one).  This hook finds those anchors at build time and links each label in the text
of every page outside docs/spec (the API reference above all) to its heading.  Only
text between tags is touched, never attributes, and never text already inside a link.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.utils import get_relative_url

_ANCHOR = re.compile(r"\{#([A-Za-z0-9_-]+)\}")
_LABEL = re.compile(r"\(((?:QS|Q|S|H|C|A|B|T)[0-9]+)(&#x27;|&#39;|')?\)|\bP(10|[0-9])\b")
_TAG = re.compile(r"(<[^>]+>)")

_targets: dict[str, str] = {}


def on_files(files, config):
    """Collect anchor -> spec page from docs/spec/*.md."""
    _targets.clear()
    spec = Path(config["docs_dir"]) / "spec"
    for page in sorted(spec.glob("*.md")):
        for anchor in _ANCHOR.findall(page.read_text(encoding="utf-8")):
            _targets.setdefault(anchor, f"spec/{page.name}")
    return files


def _link(match, page, files):
    if match.group(3) is not None:
        anchor, text = f"p{match.group(3)}", match.group(0)
    else:
        anchor = match.group(1).lower() + ("prime" if match.group(2) else "")
        text = match.group(0)
    target = _targets.get(anchor)
    if target is None:
        return text
    file = files.get_file_from_path(target)
    if file is None:
        return text
    url = get_relative_url(file.url, page.url) + "#" + anchor
    return f'<a class="spec-label" href="{url}">{text}</a>'


def on_page_content(html, page, config, files):
    """Link the labels in ``page``'s text (pages under spec/ are left alone)."""
    if page.file.src_uri.startswith("spec/"):
        return html
    parts = _TAG.split(html)
    in_link = 0
    for i, part in enumerate(parts):
        if part.startswith("<"):
            tag = part[1:].split(None, 1)[0].rstrip(">").lower() if len(part) > 2 else ""
            if tag == "a":
                in_link += 1
            elif tag == "/a":
                in_link = max(0, in_link - 1)
            continue
        if not in_link and part:
            parts[i] = _LABEL.sub(lambda m: _link(m, page, files), part)
    return "".join(parts)

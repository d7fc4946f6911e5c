"""The code and the README cite only documents in the repository, at headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CITING = ["apps", "marketflux_site", "static", "templates", "bench"]
SUFFIXES = {".py", ".js", ".html", ".css", ".mjs", ".toml", ".txt"}
CITATION = re.compile(r"docs/([a-z_-]+\.md)(?:#([a-z0-9_-]+))?")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors: headings lower-cased, punctuation dropped, spaces as hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _sources():
    yield ROOT / "README.md"
    for top in CITING:
        for path in (ROOT / top).rglob("*"):
            if path.suffix in SUFFIXES and "node_modules" not in path.parts:
                yield path


def test_every_cited_document_and_heading_exists():
    cited = 0
    for path in _sources():
        text = path.read_text(errors="replace")
        if path != Path(__file__):
            assert "DESIGN" + ".md" not in text, f"{path} cites a design file outside the repo"
        for name, anchor in CITATION.findall(text):
            doc = ROOT / "docs" / name
            assert doc.exists(), f"{path} cites docs/{name}, which does not exist"
            if anchor:
                assert anchor in _anchors(doc.read_text()), f"{path}: docs/{name}#{anchor}"
            cited += 1
    assert cited >= 10  # the code does cite the docs: the scan found its citations

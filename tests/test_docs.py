"""Docstrings cite the repository's own docs: every ``docs/<file>.md#<anchor>`` resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cti_bridge"
CITATION = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces -> '-'."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchors_follow_githubs_rules() -> None:
    text = (
        "# Top\n## 13.5 connect() raises\n```\n# not a heading\n```\n"
        '### 13.9 "Queued" answers\n## Top\n'
    )
    assert github_anchors(text) == {"top", "135-connect-raises", "139-queued-answers", "top-1"}


def citations() -> list[tuple[Path, str, str | None]]:
    return [
        (path, m.group(1), m.group(2))
        for path in sorted(PACKAGE.rglob("*.py"))
        for m in CITATION.finditer(path.read_text(encoding="utf-8"))
    ]


def test_every_cited_doc_and_anchor_exists() -> None:
    found = citations()
    assert len({(doc, anchor) for _, doc, anchor in found}) > 20  # the scan does find them
    anchors = {
        doc.name: github_anchors(doc.read_text(encoding="utf-8"))
        for doc in (ROOT / "docs").glob("*.md")
    }
    broken = [
        f"{path.relative_to(ROOT)}: docs/{doc}" + (f"#{anchor}" if anchor else "")
        for path, doc, anchor in found
        if doc not in anchors or (anchor is not None and anchor not in anchors[doc])
    ]
    assert broken == []


def test_no_docstring_cites_documents_outside_the_repository() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "/work/shared" not in text and "§" not in text, path


def readme_module_map() -> set[Path]:
    """The modules the README's "Inside (for developers)" table names, as paths."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Inside (for developers)", 1)[1].split("\n## ", 1)[0]
    named: set[Path] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        folder = PACKAGE
        for name in re.findall(r"`([\w/]+\.py)`", line.split(" | ")[0]):
            path = PACKAGE / name if "/" in name else folder / name
            folder = path.parent
            named.add(path)
    return named


def test_the_readme_module_map_matches_the_tree() -> None:
    tree = {
        path
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py" and (path.name != "__init__.py" or path.parent == PACKAGE)
    }
    named = readme_module_map()
    assert sorted(map(str, named - tree)) == []  # named but not there
    assert sorted(map(str, tree - named)) == []  # there but not named

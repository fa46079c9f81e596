"""docs/architecture.md's tree is the source tree, and no module grows past 600 lines."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent
SRC = ROOT / "src" / "flopgrad"
MAX_LINES = 600


def _documented() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    tree = text[text.index("## The tree"):text.index("## The Mode")]
    block = tree[tree.index("```") + 3:tree.rindex("```")]
    return {m.group(1) for m in re.finditer(r"^  (\S+\.py)\b", block, re.M)}


def _modules() -> set[str]:
    return {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")}


def test_the_tree_in_the_docs_lists_every_module_and_only_those():
    documented, actual = _documented(), _modules()
    missing, absent = sorted(actual - documented), sorted(documented - actual)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"
    assert not absent, f"docs/architecture.md lists modules that do not exist: {absent}"


def test_no_module_is_over_600_lines():
    long = {name: n for name in _modules()
            if (n := len((SRC / name).read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these along their seams: {long}"

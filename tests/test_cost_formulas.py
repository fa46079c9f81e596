"""Every primitive is billed by a named formula of flopgrad.costs, and docs/counting.md's
FLOPs table names that formula on the row of the primitive's billed name."""

from __future__ import annotations

import pathlib
import re

import pytest

import flopgrad as fg
from flopgrad import costs

DOC = pathlib.Path(__file__).parent.parent / "docs" / "counting.md"


def _table_rows() -> list[tuple[set[str], set[str]]]:
    text = DOC.read_text()
    section = text[text.index("## FLOPs"):text.index("## Bytes")]
    rows = []
    for line in section.splitlines():
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        if len(cells) == 3 and not cells[0].startswith("---"):
            rows.append((set(re.findall(r"[a-z_0-9]+", cells[0])),
                         set(re.findall(r"`([a-z_]+)`", cells[2]))))
    return rows


@pytest.mark.parametrize("key", sorted(fg.ops.REGISTRY))
def test_cost_is_a_named_formula_documented_beside_the_primitive(key):
    op = fg.ops.REGISTRY[key]
    formula = op.cost.__name__
    assert getattr(costs, formula, None) is op.cost, f"{key}: cost is not a costs.* function"
    assert op.cost.__doc__, f"costs.{formula} has no docstring"
    rows = _table_rows()
    assert rows, "docs/counting.md: FLOPs table not found"
    assert any(op.name in names and formula in formulas for names, formulas in rows), (
        f"docs/counting.md: no row names {op.name!r} (primitive {key!r}) with `{formula}`")


def test_formulas_return_cost_tuples():
    out = costs.linear((4, 3), [(4, 2), (3, 2), (3,)], ())
    assert isinstance(out, costs.Cost)
    assert out == costs.Cost(tensor=2 * 4 * 3 * 2, other=4 * 3, transcendental=0)
    assert costs.Cost._fields == ("tensor", "other", "transcendental")


def test_registry_key_is_separate_from_the_billed_name():
    reg = fg.ops.REGISTRY
    assert (reg["linear"].key, reg["linear"].name) == ("linear", "matmul")
    assert (reg["einsum1"].name, reg["rsqrt"].name) == ("einsum", "pow_scalar")
    assert all(op.key == key for key, op in reg.items())
    with fg.profile() as bill:
        fg.nn.functional.linear(fg.ones(2, 3), fg.ones(4, 3))
    assert bill.flops(op="matmul") == 2 * 2 * 4 * 3

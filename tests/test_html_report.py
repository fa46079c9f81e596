"""bill.to_html: one self-contained page with the charts drawn from the bill's numbers."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import flopgrad as fg
from flopgrad.cli import main
from flopgrad.models import MLP
from flopgrad.nn import functional as F
from flopgrad.planning import formula_table, step_bill
from flopgrad.planning.presets import model_config
from flopgrad.report.tables import rows


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def count(self, tag, cls=None):
        return sum(1 for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls))


def _parse(path) -> tuple[str, _Page]:
    text = open(path, encoding="utf-8").read()
    page = _Page()
    page.feed(text)
    return text, page


def _mlp_bill():
    fg.manual_seed(0)
    model = MLP([64, 128, 64, 10])
    x, y = fg.randn(32, 64), fg.randint(0, 10, (32,))
    with fg.profile() as bill:
        F.cross_entropy(model(x), y).backward()
    return bill


def test_the_page_is_self_contained_and_draws_the_bills_numbers(tmp_path):
    bill = _mlp_bill()
    path = tmp_path / "bill.html"
    bill.to_html(path, "an MLP")
    text, page = _parse(path)
    assert os.listdir(tmp_path) == ["bill.html"]  # written atomically, nothing left over
    # no network: no src or href attributes, no URL but the SVG namespace
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    assert re.findall(r"https?://[^'\"]+", text) == ["http://www.w3.org/2000/svg"] * 3
    layers = [r for r in rows(bill, "layer", 3) if r.total]
    bars = sum(1 for r in layers for ph in ("forward", "backward_dx", "backward_dw",
                                            "recompute", "optimizer") if getattr(r, ph))
    assert page.count("rect", "bar") == bars
    assert page.count("polygon", "area") == 5  # the five memory categories
    ops = [o for o in bill.roofline().ops if o.flops and o.bytes and o.measured > 0]
    assert page.count("circle", "op") == len(ops) and page.count("polyline", "roof") == 1
    assert page.count("tr") == 2 + len(rows(bill, "op")) + len(rows(bill, "layer", 3))
    assert f"{bill.flops('backward') / bill.flops('forward'):.3f}" in text  # the headline
    for rule in bill.rules():
        assert rule.name in text


def test_a_96_layer_model_stays_readable_and_carries_the_formulas(tmp_path):
    cfg = model_config("gpt3-175b")
    bill, _ = step_bill(cfg)
    bill.to_html(tmp_path / "gpt3.html", "GPT-3", formula_table(cfg, bill))
    text, page = _parse(tmp_path / "gpt3.html")
    bars_rows = len([r for r in rows(bill, "layer", 3) if r.total])
    assert bars_rows < 20  # blocks.* merged: not 96 rows of bars
    assert "blocks.*" in text and "Kaplan" in text
    assert "meta tensors: nothing ran" in text  # a meta bill's ops sit on their roof
    assert page.count("rect", "bar") > 0 and len(text) < 500_000
    assert len(bill.timeline()) > 600  # thinned for the chart, its peak kept
    assert f"peak {fg.report.human_bytes(bill.peak_bytes)};" in text


def test_html_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "demo.html"
    assert main(["demo", "--epochs", "1", "--quiet", "--html", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["bill", "gpt2", "--html", str(tmp_path / "g.html")]) == 0
    assert (tmp_path / "g.html").read_text().count("<svg") == 3
    assert main(["bill", "gpt2", "--html", str(tmp_path / "missing" / "x.html")]) == 2


def test_the_memory_chart_keeps_its_peak_when_thinned():
    from flopgrad.report.html import _timeline

    parts = ("parameters", "gradients", "optimizer_state", "saved_activations", "temporaries")

    class Spiky:  # 1,201 changes of live bytes; the peak at an odd index
        def timeline(self):
            rows = []
            for i in range(1201):
                live = 2**30 if i == 601 else 2**20
                rows.append({"op_index": i, "live_bytes": live,
                             **{p: live if p == "temporaries" else 0 for p in parts}})
            return rows

    assert "peak 1 GiB;" in _timeline(Spiky())

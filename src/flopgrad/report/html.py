"""The bill as one self-contained HTML page: no network, no CDN, inline SVG and a few lines
of inline script (for sorting the tables).

The page has the headline (FLOPs, backward/forward ratio, dW/dX split, peak memory), a
stacked bar per layer (forward, dX, dW, recompute, optimizer; repeated blocks merged as in
the terminal table, `blocks.*`), the memory timeline by category, the roofline (each op a
point: arithmetic intensity against achieved FLOP/s, the machine's roof drawn), the rule
checks, the published formulas when given, and sortable per-op and per-layer tables.
"""

from __future__ import annotations

import html
import math
import os
from typing import TYPE_CHECKING

from flopgrad.files import write_atomic
from flopgrad.report.tables import human, human_bytes, rows

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill

PHASE_COLOURS = {"forward": "#4c78a8", "backward_dx": "#f58518", "backward_dw": "#e45756",
                 "recompute": "#72b7b2", "optimizer": "#54a24b"}
MEMORY_COLOURS = {"parameters": "#4c78a8", "gradients": "#e45756",
                  "optimizer_state": "#54a24b", "saved_activations": "#f58518",
                  "temporaries": "#bab0ac"}
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
.headline{display:flex;gap:2em;flex-wrap:wrap}.headline div{background:#f4f4f4;padding:.6em 1em}
.headline b{display:block;font-size:1.3em}table{border-collapse:collapse;font-size:.85em}
th,td{padding:.2em .6em;text-align:right;border-bottom:1px solid #ddd}
th{cursor:pointer;background:#eee}td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em}
.holds{color:#2a7}.differs{color:#c33}"""
_SORT = """document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.onclick=function(){
var body=t.tBodies[0],rs=Array.from(body.rows),up=th.dataset.up!=='1';th.dataset.up=up?'1':'0';
rs.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,
y=b.cells[i].dataset.v||b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
var c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return up?c:-c});
rs.forEach(function(r){body.appendChild(r)})}})});"""


def to_html(bill: Bill, path: str | os.PathLike, title: str = "flopgrad bill",
            formulas: list[dict] | None = None, depth: int = 3) -> None:
    """Write the bill as one self-contained HTML page, atomically.

    >>> import flopgrad as fg, os, tempfile
    >>> with fg.profile() as bill:
    ...     (fg.randn(32, 16) @ fg.nn.Parameter(fg.randn(16, 8))).relu().sum().backward()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bill.to_html(os.path.join(tmp, "bill.html"))
    ...     page = open(os.path.join(tmp, "bill.html")).read()
    >>> "<svg" in page and "http" not in page.replace("http://www.w3.org", "")
    True
    """
    write_atomic(path, page(bill, title, formulas, depth))


def page(bill: Bill, title: str = "flopgrad bill", formulas: list[dict] | None = None,
         depth: int = 3) -> str:
    """The HTML text of `to_html`."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>",
             _headline(bill),
             "<h2>FLOPs by layer</h2>", _layer_bars(bill, depth),
             "<h2>Memory over the step</h2>", _timeline(bill),
             "<h2>Roofline</h2>", _roofline(bill),
             "<h2>Rule checks</h2>", _rules(bill)]
    if formulas:
        parts += ["<h2>Published formulas beside the count</h2>", _formulas(formulas)]
    parts += ["<h2>By op</h2>", _table(rows(bill, "op")),
              "<h2>By layer</h2>", _table(rows(bill, "layer", depth)),
              f"<script>{_SORT}</script></body></html>"]
    return "\n".join(parts)


def _headline(bill: Bill) -> str:
    fwd, bwd = bill.flops("forward"), bill.flops("backward")
    ratio = f"{bwd / fwd:.3f}" if fwd else "-"
    items = [("FLOPs", human(bill.flops())), ("backward / forward", ratio),
             ("dW / dX", f"{human(bill.flops('backward', role='weight'))} / "
                         f"{human(bill.flops('backward', role='input'))}"),
             ("recompute", human(bill.flops("recompute"))),
             ("peak memory", human_bytes(bill.peak_bytes) if bill.memory else "-")]
    return "<div class='headline'>" + "".join(
        f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in items) + "</div>"


def _legend(colours: dict) -> str:
    return "<div class='legend'>" + "".join(
        f"<span style='background:{c}'></span>{html.escape(k.replace('_', ' '))}"
        for k, c in colours.items()) + "</div>"


def _layer_bars(bill: Bill, depth: int) -> str:
    layers = [r for r in rows(bill, "layer", depth) if r.total]
    if not layers:
        return "<p>no FLOPs billed</p>"
    width, label, bar_h = 900, 220, 18
    top = max(r.total for r in layers)
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
           f"height='{bar_h * len(layers) + 10}' class='bars'>"]
    for i, r in enumerate(layers):
        y, x = i * bar_h + 5, label
        svg.append(f"<text x='0' y='{y + 13}' font-size='12'>{html.escape(r.key[:32])}</text>")
        for phase, colour in PHASE_COLOURS.items():
            w = (width - label - 80) * getattr(r, phase) / top
            if w > 0:
                svg.append(f"<rect class='bar' x='{x:.1f}' y='{y}' width='{w:.1f}' "
                           f"height='{bar_h - 4}' fill='{colour}'><title>{html.escape(r.key)} "
                           f"{phase}: {getattr(r, phase):,} FLOPs</title></rect>")
                x += w
        svg.append(f"<text x='{x + 4:.1f}' y='{y + 13}' font-size='11'>{human(r.total)}</text>")
    svg.append("</svg>")
    return _legend(PHASE_COLOURS) + "".join(svg)


def _timeline(bill: Bill, width: int = 900, height: int = 260, points: int = 600) -> str:
    data = bill.timeline()
    if not data:
        return "<p>no memory timeline (profile with memory=True, events=True)</p>"
    step = max(1, len(data) // points)
    if step > 1:  # one row per bin of `step`: its highest, so the peak is never dropped
        data = [max(data[i:i + step], key=lambda r: r["live_bytes"])
                for i in range(0, len(data), step)]
    peak = max(r["live_bytes"] for r in data) or 1
    n = max(len(data) - 1, 1)
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20}' "
           "class='timeline'>"]
    base = [0.0] * len(data)
    for cat, colour in MEMORY_COLOURS.items():
        top = [b + r[cat] for b, r in zip(base, data, strict=True)]
        upper = " ".join(f"{i * width / n:.1f},{height - t * height / peak:.1f}"
                         for i, t in enumerate(top))
        lower = " ".join(f"{i * width / n:.1f},{height - b * height / peak:.1f}"
                         for i, b in reversed(list(enumerate(base))))
        svg.append(f"<polygon class='area' points='{upper} {lower}' fill='{colour}' "
                   f"opacity='0.85'><title>{cat}</title></polygon>")
        base = top
    svg.append(f"<text x='4' y='{height + 15}' font-size='11'>peak {human_bytes(peak)}; "
               f"{len(bill.timeline())} changes of live bytes, op index 0 to "
               f"{data[-1]['op_index']}</text></svg>")
    return _legend(MEMORY_COLOURS) + "".join(svg)


def _roofline(bill: Bill, width: int = 900, height: int = 360) -> str:
    r = bill.roofline()
    ops = [o for o in r.ops if o.flops and o.bytes and o.measured > 0]
    if not ops:
        return "<p>no op with FLOPs and bytes to place</p>"
    m = r.machine
    meta = bill.ledger.saw_meta  # nothing ran: place each op at its roof (predicted)
    achieved = [o.flops / (o.roofline if meta else o.measured) for o in ops]
    xs = [math.log10(o.intensity) for o in ops] + [math.log10(m.ridge)]
    ys = [math.log10(a) for a in achieved] + [math.log10(m.peak_flops)]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    y0, y1 = min(ys) - 0.5, max(ys) + 0.3

    def px(lx, ly):
        return (width * (lx - x0) / (x1 - x0), height - height * (ly - y0) / (y1 - y0))

    roof = []
    for k in range(41):
        lx = x0 + (x1 - x0) * k / 40
        roof.append(px(lx, min(math.log10(m.peak_flops), math.log10(m.bandwidth) + lx)))
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20}' "
           "class='roofline'>",
           "<polyline class='roof' fill='none' stroke='#333' stroke-width='2' points='"
           + " ".join(f"{a:.1f},{b:.1f}" for a, b in roof) + "'/>"]
    for o, lx, ly in zip(ops, xs, ys, strict=False):
        a, b = px(lx, ly)
        svg.append(f"<circle class='op' cx='{a:.1f}' cy='{b:.1f}' r='5' fill='#e45756'>"
                   f"<title>{html.escape(o.op)}: {o.intensity:.2f} FLOPs/byte, "
                   f"{10 ** ly / 1e9:.2f} GFLOP/s"
                   + ("" if meta else f", {o.below_roof:.1f}x below the roof")
                   + "</title></circle>"
                   f"<text x='{a + 7:.1f}' y='{b + 4:.1f}' "
                   f"font-size='10'>{html.escape(o.op)}</text>")
    what = ("attainable FLOP/s (meta tensors: nothing ran, each op is placed at its roof)"
            if meta else "achieved FLOP/s")
    svg.append(f"<text x='4' y='{height + 15}' font-size='11'>x: FLOPs per byte, y: {what} "
               f"(log scales); roof: {m.peak_flops / 1e9:.1f} GFLOP/s, "
               f"{m.bandwidth / 1e9:.1f} GB/s ({html.escape(m.name)})</text></svg>")
    return "".join(svg)


def _rules(bill: Bill) -> str:
    items = []
    for rule in bill.rules():
        mark = "holds" if rule.holds else "differs"
        items.append(f"<li><b>{html.escape(rule.name)}</b>: measured {rule.measured:.4g}, "
                     f"folklore {rule.folklore:.4g} <span class='{mark}'>({mark})</span>. "
                     f"{html.escape(rule.reason)}</li>")
    return "<ul>" + "".join(items) + "</ul>" if items else "<p>no rule applies</p>"


def _formulas(formulas: list[dict]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(str(f['formula']))}</td><td>{f['value']:.4g}</td>"
        f"<td>{f['counted']:.4g}</td><td>{f['ratio']:.4f}</td>"
        f"<td style='text-align:left'>{html.escape(str(f['reason']))}</td></tr>"
        for f in formulas)
    return ("<table><thead><tr><th>formula</th><th>value</th><th>counted</th><th>ratio</th>"
            f"<th>why</th></tr></thead><tbody>{body}</tbody></table>")


def _table(table_rows) -> str:
    cols = ("forward", "backward_dx", "backward_dw", "recompute", "optimizer", "total",
            "bytes", "saved_bytes")
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in ("key", *cols))
    body = []
    for r in table_rows:
        cells = [f"<td>{html.escape(r.key)}</td>"]
        for c in cols:
            v = r.total if c == "total" else getattr(r, c)
            shown = human_bytes(v) if "bytes" in c else human(v)
            cells.append(f"<td data-v='{v}'>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")

"""The HTML report as a person sees it: rendered by headless Chromium (Debian's `chromium`;
.ci/run installs it), screenshot pixels checked in the chart areas, the drawn bars counted in
the rendered DOM, no console errors and no network request."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from flopgrad.cli import main
from flopgrad.planning import formula_table, step_bill
from flopgrad.planning.presets import model_config
from flopgrad.report.html import MEMORY_COLOURS, PHASE_COLOURS
from flopgrad.report.tables import rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run "
                             "installs it where it can)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,2400"]
# requests the browser itself makes (clock, dictionaries), not the page: every one fails,
# all hosts resolve to nothing
_BROWSER_HOSTS = ("google.com", "gvt1.com", "googleapis.com", "gstatic.com")


def _chromium(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True,
                          timeout=timeout)


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def _render(path, tmp_path):
    from matplotlib.image import imread

    shot, net = tmp_path / "shot.png", tmp_path / "net.json"
    done = _chromium(f"--screenshot={shot}", f"--log-net-log={net}", "--enable-logging=stderr",
                     f"file://{path}")
    assert shot.exists(), done.stderr[-2000:]
    dom = _chromium("--dump-dom", f"file://{path}").stdout
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    requests = [e["params"]["url"] for e in json.loads(net.read_text()).get("events", [])
                if str(e.get("params", {}).get("url", "")).startswith(("http:", "https:",
                                                                         "ws:", "wss:"))
                and not any(h in e["params"]["url"] for h in _BROWSER_HOSTS)]
    return pixels, dom, done.stderr, requests


def _count(pixels: np.ndarray, colour: str, tol: int = 12) -> int:
    return int((np.abs(pixels - _rgb(colour)).max(axis=-1) <= tol).sum())


@pytest.mark.parametrize("which", ["demo", "gpt2"])
def test_the_report_renders_with_its_charts_drawn(which, tmp_path):
    page = tmp_path / f"{which}.html"
    if which == "demo":
        assert main(["demo", "--epochs", "1", "--quiet", "--html", str(page)]) == 0
        bill = None
    else:
        cfg = model_config("gpt2")
        bill, _ = step_bill(cfg)
        bill.to_html(page, "gpt2", formula_table(cfg, bill))
    pixels, dom, stderr, requests = _render(page, tmp_path)
    assert ":CONSOLE" not in stderr and "Uncaught" not in stderr  # no console message at all
    assert requests == []  # nothing left the page
    assert _count(pixels, PHASE_COLOURS["forward"]) > 500  # the forward bars are drawn
    assert _count(pixels, PHASE_COLOURS["backward_dw"]) > 200
    assert _count(pixels, MEMORY_COLOURS["parameters"]) > 500  # the memory timeline
    assert dom.count("class=\"bar\"") == dom.count("<rect class=\"bar\"") > 0
    if bill is not None:
        bars = sum(1 for r in rows(bill, "layer", 3) if r.total
                   for ph in PHASE_COLOURS if getattr(r, ph))
        assert dom.count("<rect class=\"bar\"") == bars

"""Plots people look at, offline too (issue 16).

DVC's own page loads Vega from a CDN, so with no network it is blank; ours (`medaug plots page`, named by
.dvc/config) inlines the scripts. These tests draw the real `dvc plots show` page (dvc.yaml's `plots:`, the
templates in .dvc/plots/, the .dvc/config and the plots/ files of this checkout) in headless Chromium with no
network and look for the drawn marks, check that DVC's CDN page draws nothing there, and read the charts'
scenegraphs (vl-convert, no browser): the funnel in pipeline order and bars from zero, a CI bar per candidate.
The rows compare writes, in process: tests/unit/test_plots.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import vl_convert
from ruamel.yaml import YAML

from medaug import plots
from medaug.errors import MedaugError
from support.browser import needs_chromium
from support.paths import ROOT



def dvc_plots() -> list:
    return YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]


@pytest.fixture(scope="module")
def plots_project(tmp_path_factory) -> Path:
    """A DVC project holding this checkout's plot definitions, templates, DVC config and plots/ files, and the
    page template `medaug plots page` writes where .dvc/config looks for it."""
    missing = [d for d in map(plot_source, dvc_plots()) if not (ROOT / d).exists()]
    assert not missing, f"{', '.join(missing)}: missing in this checkout; run `dvc repro` (the stage that writes it)"
    root = tmp_path_factory.mktemp("plots-project")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".dvc" / "plots").mkdir()
    for template in (ROOT / ".dvc" / "plots").glob("*.json"):
        shutil.copy(template, root / ".dvc" / "plots" / template.name)
    shutil.copytree(ROOT / "plots", root / "plots")
    with open(root / "dvc.yaml", "w", encoding="utf-8") as f:
        YAML().dump({"plots": dvc_plots()}, f)
    plots.write_page(root / plots.PAGE)
    return root


def plot_source(definition) -> str:
    """The file or folder a dvc.yaml plot definition draws: its id, or the file its `y` names."""
    plot_id, props = next(iter(definition.items())) if isinstance(definition, dict) else (definition, {})
    y = (props or {}).get("y")
    return next(iter(y)) if isinstance(y, dict) else plot_id


def expected_charts(root: Path) -> int:
    """What the page must draw: a chart per definition, or per file of a folder definition."""
    return sum(len(list(path.glob("*.json"))) if path.is_dir() else 1
               for path in (root / plot_source(d) for d in dvc_plots()))


def charts(html: str) -> dict[str, str]:
    """{chart div id: its DOM} of a dumped page: every chart div vega-embed took (the divs are siblings)."""
    parts = re.split(r'<div id="([^"]+)" class="vega-embed[^"]*"', html)
    return dict(zip(parts[1::2], parts[2::2]))


def drawn_marks(chart: str) -> int:
    """Vega mark groups with at least one item (a path, line, symbol or text) in a chart's SVG."""
    return len(re.findall(r'class="mark-\w+ role-mark[^"]*"[^>]*>\s*<(?:path|line|text|g)\b', chart))


@needs_chromium
def test_the_plots_page_draws_every_chart_offline(plots_project, tmp_path):
    page = plots.show(plots_project, tmp_path / "page")  # the template .dvc/config names: what `dvc plots show` uses
    text = page.read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" not in text and "<script src=" not in text
    html = plots.dom(page)
    found = charts(html)
    assert plots.rendered(html) == ["ok"] * expected_charts(plots_project), plots.rendered(html)
    assert len(found) == expected_charts(plots_project)
    for div, chart in found.items():
        assert 'class="marks"' in chart, f"{div}: no Vega SVG"
        assert drawn_marks(chart) >= 1, f"{div}: an SVG with no marks drawn"
    candidates = found["plots_candidates_json"]
    assert drawn_marks(candidates) >= 2 * 5  # per metric: CI rules, points, labels, majority and teacher lines
    assert "gemma270m-zero-shot" in candidates and "majority class" in candidates and "macro-F1" in candidates


@needs_chromium
def test_dvc_default_cdn_page_draws_nothing_offline(plots_project, tmp_path):
    """The check above can fail: DVC's own page (its CDN scripts), in the same offline browser, draws no chart."""
    from dvc_render.html import PAGE_HTML

    default = tmp_path / "default.html"
    default.write_text(PAGE_HTML, encoding="utf-8")
    page = plots.show(plots_project, tmp_path / "page", ("plots/candidates.json",), html_template=default)
    assert "https://cdn.jsdelivr.net/npm/vega" in page.read_text(encoding="utf-8")
    html = plots.dom(page)
    assert 'class="marks"' not in html and "<canvas" not in html
    with pytest.raises(MedaugError, match="charts not drawn offline"):
        plots.screenshot(page, tmp_path / "blank.png")


@needs_chromium
def test_a_screenshot_shows_the_chart(plots_project, tmp_path):
    from PIL import Image

    page = plots.show(plots_project, tmp_path / "page", ("plots/candidates.json",))
    with Image.open(plots.screenshot(page, tmp_path / "candidates.png")) as image:
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16) or []
    assert 600 < width <= 1400 and 150 < height < 600  # cropped to the chart, not the whole window
    assert len(colours) > 20  # text, grid, CI bars in several colours: not a blank page


# --- the charts, from their scenegraphs (no browser) ---------------------------------------------------------------

def nodes(spec: dict, keep) -> list[dict]:
    """Every node of a spec's scenegraph (as vl-convert draws it) for which `keep(node)` holds."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if keep(node):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(vl_convert.vegalite_to_scenegraph(spec, vl_version=plots.VL_VERSION))
    return found


def marks(spec: dict, marktype: str | None = None) -> list[dict]:
    """Every mark group of a spec's scenegraph (`marktype`: only those), with its items."""
    return nodes(spec, lambda n: n.get("role") == "mark" and marktype in (None, n.get("marktype")))


def axis_labels(spec: dict) -> list[list[str]]:
    return [[item["text"] for item in n.get("items", [])] for n in nodes(spec, lambda n: n.get("role") == "axis-label")]


def test_funnel_bars_keep_pipeline_order_and_start_at_zero(plots_project):
    rows = json.loads((plots_project / "plots/funnel.json").read_text())
    spec = plots.specs(plots_project, ("plots/funnel.json",))["plots/funnel.json"]
    assert [row["step"] for row in rows][:2] == ["in", "generate"]  # the filter writes it in pipeline order
    assert [row["step"] for row in rows] in axis_labels(spec)  # drawn in that order, not alphabetically
    (bars,) = marks(spec, "rect")
    top = max(row["items"] for row in rows)
    widest = max(item["width"] for item in bars["items"])
    for row, bar in zip(rows, bars["items"]):
        assert bar["x"] == 0  # from zero: the smallest bar is not empty
        assert bar["width"] / widest == pytest.approx(row["items"] / top, abs=0.01)


def test_per_class_bars_start_at_zero_in_the_task_order(plots_project):
    path = sorted((plots_project / "plots/per_class").glob("*.json"))[0]
    rows = json.loads(path.read_text())
    spec = plots.specs(plots_project, ("plots/per_class",))[path.relative_to(plots_project).as_posix()]
    assert [row["class"] for row in rows] in axis_labels(spec)
    (bars,) = marks(spec, "rect")
    assert all(bar["x"] == 0 for bar in bars["items"])


def test_the_candidates_chart_draws_each_ci(plots_project):
    rows = json.loads((plots_project / "plots/candidates.json").read_text())
    spec = plots.specs(plots_project, ("plots/candidates.json",))["plots/candidates.json"]
    ci_bars = [m for m in marks(spec, "rule") if m["name"] == "child_layer_0_marks"]
    assert len(ci_bars) == 2  # a panel per metric
    for metric, bars in zip(("accuracy", "macro_f1"), ci_bars):
        scored = [r for r in rows if r["metric"] == metric and r["role"] != "majority"]
        assert len(bars["items"]) == len(scored)
        for row, bar in zip(scored, bars["items"]):  # the x scale is 0..1 over the panel's 320 px
            assert (bar["x"], bar["x2"]) == pytest.approx((320 * row["low"], 320 * row["high"]), abs=0.5)
            assert bar["x"] < bar["x2"]


def test_static_renders(plots_project, tmp_path):
    written = plots.render_all(plots_project, tmp_path, "svg")
    assert len(written) == expected_charts(plots_project)
    assert all(path.read_text(encoding="utf-8").startswith("<svg") for _, path in written)
    assert written[0][0].startswith("Test split: every candidate")
    assert ("Per-class F1 (test split) – teacher", tmp_path / "per_class-teacher.svg") in written


def test_a_missing_plot_file_is_named(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("plots:\n  - plots/funnel.json:\n      x: items\n      y: step\n")
    with pytest.raises(MedaugError, match=r"plots/funnel.json: .*No such file.*run `dvc repro`"):
        plots.specs(tmp_path)

"""The charts of `dvc plots show`, drawn with no network, and as static images.

DVC's page loads Vega from a CDN (`dvc_render.vega.VegaRenderer.SCRIPTS`), so offline it is blank. `page_template`
is the HTML template `dvc plots show` fills instead (.dvc/config `plots.html_template` names PAGE; `medaug plots
page` writes it, `make setup` too): the Vega, Vega-Lite and vega-embed scripts are inlined from
vl-convert-python's bundle, and it has no `{scripts}` placeholder, so DVC's CDN tags are left out. The file is
generated, not committed: it is 900 kB of JavaScript that the pinned vl-convert-python version fixes.

The page draws SVG (crisp screenshots, marks a test can find in the DOM) and marks each chart's div
`data-rendered="ok"` or `"error: <why>"`, and the page its size (`data-size`, for a screenshot that fits).
`specs` reads the filled Vega-Lite specs from `dvc plots show --json`, `render` turns one into PNG or SVG with
vl-convert (the same Vega-Lite version as the page), for the README, a model card or a report; `screenshot` takes
a picture of a page in headless Chromium with no network (docs/plots/ and tests/integration/test_plots.py).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from medaug.data.jsonl import atomic_path
from medaug import dvc_cmd
from medaug.errors import MedaugError

log = logging.getLogger(__name__)

PAGE = Path(".dvc/plots/page.html")
"""Where .dvc/config's `plots.html_template` (plots/page.html, relative to .dvc/) points `dvc plots show`."""

VL_VERSION = "5.21"
"""The Vega-Lite of the page and of the static renders: the last v5, the schema DVC's and our templates name."""

DOCS = {"candidates": "plots/candidates.json", "train-loss": "plots/curves/train.json",
        "dev-accuracy": "plots/curves/dev.json", "funnel": "plots/funnel.json", "per-class": "plots/per_class"}
"""The charts docs/plots/ shows (`medaug plots screenshot`): file name -> plot id in dvc.yaml."""

_EMBED = """
window.vega = vega;
window.vegaLite = vegaLite;
function measure() {
  const boxes = [...document.body.children].map((e) => e.getBoundingClientRect());
  const right = Math.max(0, ...boxes.map((b) => b.right)), bottom = Math.max(0, ...boxes.map((b) => b.bottom));
  document.documentElement.dataset.size = Math.ceil(right) + "x" + Math.ceil(bottom);
}
function done(el, mark) {
  document.querySelector(el).dataset.rendered = mark;
  setTimeout(measure, 200);  // after the layout settles (bindings, legends)
}
window.vegaEmbed = (el, spec, opt) => vegaEmbed(el, spec, {renderer: "svg", ...opt}).then(
  (result) => { done(el, "ok"); return result; },
  (error) => { done(el, "error: " + error); throw error; });
"""

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>medaug plots</title>
<style>
  body { font-family: sans-serif; margin: 16px; }
  body > div { display: inline-block; vertical-align: top; margin: 0 24px 24px 0; }
</style>
<script>/* Vega, Vega-Lite, vega-embed: vl-convert-python's bundle, inlined so the page needs no network */
@BUNDLE@
</script>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def page_template() -> str:
    """The `dvc plots show` HTML template with the Vega scripts inlined (see the module docstring)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(_EMBED, vl_version=VL_VERSION)
    return _PAGE.replace("@BUNDLE@", bundle.replace("</script", "<\\/script"))


def write_page(path: Path = PAGE) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(page_template(), encoding="utf-8")
    return Path(path)


def _dvc(root: Path, *args: str) -> str:
    return dvc_cmd.run(*args, what=f"`dvc {' '.join(args)}` in {root}", cwd=root, timeout=600)


def target(plot_id: str) -> str:
    """The `dvc plots show` target that selects the dvc.yaml plot `plot_id` alone. DVC matches targets as regular
    expressions (after turning backslashes into slashes, so special characters go in brackets), and draws a target
    that is an existing path a second time with its default template (the `$` makes it no path)."""
    if "\\" in plot_id or "^" in plot_id:
        raise MedaugError(f"plot id {plot_id!r}: a backslash or caret cannot be matched; rename it in dvc.yaml")
    return "".join(f"[{c}]" if c in ".$*+?{}()|[" else c for c in plot_id) + "$"


def show(root: Path, out_dir: Path, plot_ids: tuple[str, ...] = (), html_template: Path | None = None) -> Path:
    """`dvc plots show` of the project at `root` (the dvc.yaml plots `plot_ids`, default all) into `out_dir`;
    the page template is .dvc/config's unless `html_template` is given. Returns the page."""
    template = () if html_template is None else ("--html-template", str(Path(html_template).resolve()))
    _dvc(root, "plots", "show", "-o", str(Path(out_dir).resolve()), *template, *map(target, plot_ids))
    return Path(out_dir) / "index.html"


def specs(root: Path, plot_ids: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{plot id: its filled Vega-Lite spec} from `dvc plots show --json` (a directory plot gives one per file)."""
    shown = json.loads(_dvc(root, "plots", "show", "--json", *map(target, plot_ids)) or "{}")
    for error in shown.get("errors") or []:
        raise MedaugError(f"{error.get('source') or error.get('name')}: {error.get('msg')} (`dvc plots show` in "
                          f"{root}); run `dvc repro` to write the plots/ files")
    return {plot_id.split("::", 1)[-1]: r["content"] for plot_id, renders in shown.get("data", {}).items()
            for r in renders if r.get("type") == "vega"}


def render(spec: dict[str, Any], fmt: str) -> bytes:
    """A Vega-Lite spec as a PNG (2x scale, for screens) or SVG image."""
    import vl_convert

    if fmt == "png":
        return vl_convert.vegalite_to_png(spec, vl_version=VL_VERSION, scale=2)
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(spec, vl_version=VL_VERSION).encode("utf-8")
    raise MedaugError(f"image format {fmt!r}: expected png or svg")


def slug(plot_id: str) -> str:
    """A file name for a plot id: `plots/per_class/x-0.json` -> `per_class-x-0`."""
    name = re.sub(r"\.json$", "", plot_id.removeprefix("plots/"))
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def _title(plot_id: str, spec: dict[str, Any]) -> str:
    title = spec.get("title")
    return (title.get("text") if isinstance(title, dict) else title) or plot_id


def render_all(root: Path, out_dir: Path, fmt: str = "png") -> list[tuple[str, Path]]:
    """Every chart of the project at `root` as an image in `out_dir`; (its title, path), in dvc.yaml's order. The
    charts of a folder definition share its title: theirs ends with the file's name (` – <candidate>`)."""
    charts = specs(root)
    titles = [_title(plot_id, spec) for plot_id, spec in charts.items()]
    written = []
    for (plot_id, spec), title in zip(charts.items(), titles):
        path = Path(out_dir) / f"{slug(plot_id)}.{fmt}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(render(spec, fmt))
        written.append((title + (f" – {Path(plot_id).stem}" if titles.count(title) > 1 else ""), path))
    return written


# --- headless Chromium, no network -------------------------------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise MedaugError("chromium: not found; install it (Debian: `apt-get install -y chromium`; `make test` does "
                      "it as root)")


def _no_network() -> list[str]:
    """`unshare -n` (a network namespace with no interfaces) where this process may create one; Chromium's own
    proxy and resolver flags (`_run`) keep it offline where it may not."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def _run(page: Path, *args: str, window: tuple[int, int], fragment: str = "") -> str:
    """Chromium, headless and offline, on `page` (at `#fragment`, when given), until its scripts are done (virtual
    time); returns stdout."""
    with tempfile.TemporaryDirectory(prefix="medaug-chromium-") as profile:
        cmd = [*_no_network(), chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", "--disable-background-networking",
               "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
               "--virtual-time-budget=20000", *args,
               Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise MedaugError(f"chromium on {page} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def dom(page: Path, window: tuple[int, int] = (1400, 1000), fragment: str = "") -> str:
    """The page's DOM after its scripts ran, in headless Chromium with no network (at `#fragment`: what the page's
    address holds, e.g. the `medaug view` filters)."""
    return _run(page, "--dump-dom", window=window, fragment=fragment)


def rendered(html: str) -> list[str]:
    """The `data-rendered` mark of each chart of a dumped DOM: "ok", or "error: <why>"."""
    return re.findall(r'data-rendered="([^"]*)"', html)


def screenshot(page: Path, png: Path, width: int = 1400) -> Path:
    """A PNG of the page as drawn offline, cropped to its charts (laid out in a window `width` px wide)."""
    html = dom(page, (width, 1000))
    marks = rendered(html)
    if not marks or any(m != "ok" for m in marks):
        raise MedaugError(f"{page}: charts not drawn offline ({marks or 'no chart'}); is it the template of "
                          f"`medaug plots page`?")
    size = re.search(r'data-size="(\d+)x(\d+)"', html)
    # the right margins (24 + 16 px) keep the charts' line breaks as they were laid out; 16 px below
    w, h = (int(size.group(1)) + 40, int(size.group(2)) + 16) if size else (width, 1000)
    with tempfile.TemporaryDirectory(prefix="medaug-shot-") as tmp:  # Chromium picks the format by extension
        shot = Path(tmp) / "shot.png"
        _run(page, f"--screenshot={shot}", window=(min(w, width), h))
        if not shot.exists() or not shot.stat().st_size:
            raise MedaugError(f"chromium wrote no screenshot of {page}")
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(png) as out:
            shutil.copyfile(shot, out)
    return Path(png)


def screenshots(root: Path, out_dir: Path, charts: dict[str, str] = DOCS) -> list[Path]:
    """`out_dir`/<name>.png of each chart (plot id) in `charts`, each drawn on its own page by `dvc plots show`
    (with a fresh `page_template`, whatever .dvc/plots/page.html holds) in headless Chromium with no network."""
    written = []
    with tempfile.TemporaryDirectory(prefix="medaug-plots-") as tmp:
        template = write_page(Path(tmp) / "page.html")
        for name, plot_id in charts.items():
            page = show(root, Path(tmp) / name, (plot_id,), template)
            written.append(screenshot(page, Path(out_dir) / f"{name}.png"))
            log.info(f"wrote {written[-1]}")
    return written

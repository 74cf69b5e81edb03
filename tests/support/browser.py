"""Pages read in headless Chromium with no network (medaug.plots): the skip mark where there is no Chromium, and
what a `medaug view` page shows."""

import re
import shutil
from pathlib import Path

import pytest

from medaug import plots

needs_chromium = pytest.mark.skipif(
    not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
    reason="chromium not installed: `make test` installs it as root (apt-get install -y chromium)")


def shown(page: Path, fragment: str = "") -> tuple[list[str], list[dict[str, str]]]:
    """(the ids of the rows a `medaug view` page shows at `#fragment`, in order; each row's cells by column),
    after its script ran in headless Chromium with no network."""
    dom = plots.dom(page, fragment=fragment)
    assert 'data-rendered="ok"' in dom, dom[-2000:]
    body = dom.split('<table id="items">', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r'<tr data-id="([^"]*)"[^>]*>(.*?)</tr>', body, re.S)
    cells = [dict(re.findall(r'<td class="(\w+)">(.*?)</td>', r, re.S)) for _, r in rows]
    count = int(re.search(r'id="count" data-shown="(\d+)"', dom).group(1))
    assert count == len(rows), (count, len(rows))
    return [i for i, _ in rows], cells

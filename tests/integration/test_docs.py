"""The documentation site (issue 32): `mkdocs build --strict` passes, its CLI reference is generated from the click
commands, its params reference from the typed schema, and a broken link fails the build."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from support.paths import ROOT

MKDOCS = Path(sys.executable).absolute().parent / "mkdocs"


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    if not MKDOCS.exists():
        pytest.fail("mkdocs is not installed in this venv: `make setup` installs the docs extra, which has it")
    return subprocess.run([str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)], cwd=config.parent,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"})


def text(page: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = build(ROOT / "mkdocs.yml", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_every_command_is_in_the_generated_cli_reference(site):
    from medaug.cli import cli

    page = text(site / "cli" / "index.html")
    ctx = click.Context(cli)
    names = []
    for name, cmd in cli.commands.items():
        names.append(f"medaug {name}")
        if isinstance(cmd, click.Group):
            names += [f"medaug {name} {sub}" for sub in cmd.list_commands(ctx)]
    assert len(names) > 20
    missing = [n for n in names if n not in page]
    assert not missing, missing
    # the options come from click too: the help text of one of them, word for word
    assert cli.commands["predict"].params[0].help.split(",")[0] in page


def test_every_params_key_is_in_the_params_reference(site):
    import dataclasses

    from medaug.params import Params

    page = text(site / "params" / "index.html")
    seen = set()

    def keys(cls):
        for f in dataclasses.fields(cls):
            yield f.name
            t = f.type if isinstance(f.type, type) else None
            if t is not None and dataclasses.is_dataclass(t) and t not in seen:
                seen.add(t)
                yield from keys(t)

    missing = [k for k in keys(Params) if k not in page]
    assert not missing, missing
    assert "Short names (keys of the top-level" in page  # a field's docstring (train.models), rendered


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """--strict with the link validation of mkdocs.yml: a link to a page that does not exist is an error."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copytree(ROOT / "docs", copy / "docs")
    (copy / "src").symlink_to(ROOT / "src")
    page = copy / "docs" / "gpu.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    r = build(copy / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0
    assert "no-such-page.md" in r.stdout + r.stderr

"""What the project declares to pip (issue 32): every distribution its code imports, and nothing it never uses."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT


def test_every_import_of_the_code_is_a_declared_dependency():
    """deptry (the test extra) reads pyproject.toml and every import of src/ and stages/: an import of a package
    that only arrives as another's dependency (DEP003), or a missing one (DEP001), fails here, naming file and
    line; so does a declared package nothing uses (DEP002; the few used without an import are listed in
    pyproject.toml's [tool.deptry])."""
    deptry = shutil.which("deptry", path=str(Path(sys.executable).parent))
    if deptry is None:
        pytest.fail("deptry is not installed in this venv: `make setup` installs the test extra, which has it")
    r = subprocess.run([deptry, "src", "stages"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": str(Path(sys.executable).parent), "NO_COLOR": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No dependency issues found" in r.stdout + r.stderr

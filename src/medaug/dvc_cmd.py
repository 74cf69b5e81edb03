"""`dvc` as a subprocess of this interpreter (the DVC that medaug pinned), for the CLI and the plots."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from medaug.errors import MedaugError

log = logging.getLogger(__name__)


def run(*args: str, what: str, cwd: Path | None = None, timeout: float | None = None) -> str:
    """Run `dvc ARGS` in `cwd` and return its stdout; a failure is a MedaugError naming `what` failed and DVC's own
    error line."""
    log.debug("$ dvc " + " ".join(args))
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    if r.returncode != 0:
        raise MedaugError(f"{what} failed: {error_line(r.stderr + r.stdout)}")
    log.debug(r.stdout.strip())
    return r.stdout


def error_line(output: str) -> str:
    """DVC's error line ("ERROR: ..." without the prefix), else its last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return errors[0] if errors else lines[-1] if lines else "(no output)"

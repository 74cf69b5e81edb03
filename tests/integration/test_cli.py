"""The `medaug` executable as click users expect it: --version, --help anywhere, exit status 1 for errors in the
data (one `error: ...` line) and 2 for usage errors, and -q/-v setting what the status logging shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from medaug.llm.cache import RequestCache
from support.paths import ROOT

MEDAUG = Path(sys.executable).parent / "medaug"


def medaug(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MEDAUG_LOG_LEVEL"}
    return subprocess.run([str(MEDAUG), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def one_entry_cache(tmp_path: Path) -> Path:
    """A request cache with one entry, written through the project's API."""
    path = tmp_path / "c.sqlite"
    rc = RequestCache(path)
    rc.put(RequestCache.key(name="q"), {"text": "a", "input_tokens": 1, "output_tokens": 2}, backend="b", model="m")
    rc.close()
    return path


def test_version_names_medaug_and_its_libraries(tmp_path):
    r = medaug("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith(f"medaug {version('medaug')} (") and "\n" not in line
    assert all(f"{lib} " in line for lib in ("torch", "transformers", "peft", "dvc", "mlflow"))


def test_help_works_outside_a_project(tmp_path):
    """`cache` reads params.yaml only when a subcommand runs, so its help needs no project."""
    for args in (["--help"], ["cache", "--help"], ["cache", "stats", "--help"]):
        r = medaug(*args, cwd=tmp_path)
        assert r.returncode == 0 and "Usage: medaug" in r.stdout, (args, r.stderr)


def test_usage_errors_exit_2(tmp_path):
    r = medaug("predict", "--input", "in.jsonl", cwd=tmp_path)
    assert r.returncode == 2 and "Missing option '--model'" in r.stderr
    r = medaug("-q", "-v", "check-params", cwd=tmp_path)
    assert r.returncode == 2 and "exclude each other" in r.stderr


def test_data_errors_exit_1_with_one_error_line(tmp_path):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"question": "q?", "contexts": ["c"]}\n{"question": \n')
    r = medaug("predict", "--model", "models:/none@champion", "--input", bad, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]  # (mlflow may warn on import)
    assert errors == r.stderr.splitlines()[-1:] and "in.jsonl:2: malformed JSON" in errors[0]
    r = subprocess.run([str(MEDAUG), "predict", "--model", "models:/none@champion", "--input", "-"], cwd=tmp_path,
                       input=bad.read_text(), capture_output=True, text=True, timeout=120)  # - is stdin
    assert r.returncode == 1 and r.stderr.splitlines()[-1].startswith("error: <stdin>:2: malformed JSON ("), r.stderr

    (tmp_path / "params.yaml").write_text("train:\n  learning_rate: .nan\n")
    r = medaug("check-params", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "error: params.yaml: train.learning_rate = nan must be a finite number\n"


def test_quiet_hides_status_lines_and_verbose_shows_debug(tmp_path, one_entry_cache):
    out = tmp_path / "out.jsonl"
    export = ["cache", "--path", one_entry_cache, "export", "--output", out]
    r = medaug(*export, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, f"exported 1 entries to {out}\n")

    r = medaug("-q", *export, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")

    r = medaug("-v", *export, cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr.splitlines() == [f"cache: {one_entry_cache.resolve()}", f"exported 1 entries to {out}"]

    r = subprocess.run([str(MEDAUG), "cache", "--path", tmp_path / "piped.sqlite", "import", "-"], cwd=tmp_path,
                       input=out.read_text(), capture_output=True, text=True, timeout=120)  # - is stdin
    assert (r.returncode, r.stdout) == (0, "added 1 of 1 entries from stdin (0 already cached)\n"), r.stderr


def test_stage_scripts_log_at_medaug_log_level(tmp_path, monkeypatch):
    """`errors.guarded` sets the stage's logging from $MEDAUG_LOG_LEVEL, which `medaug -q/-v` exports."""
    script = ("import logging, sys\nfrom medaug.errors import guarded\n"
              "log = logging.getLogger('medaug.stage')\n"
              "guarded(lambda: (log.debug('d'), log.info('i'), log.warning('w')))\n")
    levels = {"": "i\nw\n", "DEBUG": "d\ni\nw\n", "WARNING": "w\n"}
    for level, want in levels.items():
        env = {**os.environ, "MEDAUG_LOG_LEVEL": level}
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", want), level


def test_make_repro_checks_params_before_dvc_runs_anything(tmp_path):
    """`make repro` (the README's first command) runs `medaug check-params` first: a data.source that is no path
    fails with the fix, where `dvc repro` alone would say only that the file `sample` does not exist."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "params.yaml").write_text("data:\n  source: sample\n")
    bin_dir = Path(sys.executable).parent
    r = subprocess.run(["make", "-o", ".venv/.installed", "-o", ".dvc/plots/page.html", f"BIN={bin_dir}", "repro"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "data.source = 'sample' is no path" in r.stderr and "src/medaug/data/sample/ori_pqal_sample.json" in r.stderr
    assert "dvc repro" not in r.stdout and not (tmp_path / "dvc.lock").exists()

"""`medaug check-params` in its own process: a bad params.yaml fails in one line. The params themselves:
tests/unit/test_params.py."""

import shutil
import subprocess
import sys

import yaml
from ruamel.yaml import YAML

from support.paths import ROOT


def test_cli_check_params_exits_nonzero_with_one_line(tmp_path):
    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    raw["filter"]["ngram"] = 3
    raw["task"]["file"] = str(ROOT / raw["task"]["file"])  # a params.yaml outside the project names its task file so
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "medaug.cli", "check-params", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == ("error: params.yaml: unknown key 'filter.ngram' (known keys here: steps, "
                                "min_question_chars, max_question_chars, dedup, decontaminate, judge, balance, "
                                "teacher)")


def test_cli_check_params_refuses_a_yaml_nan(tmp_path):
    """What `dvc exp run -S train.learning_rate=nan` writes into params.yaml."""
    text = (ROOT / "params.yaml").read_text()
    assert "  learning_rate: 0.0002\n" in text
    shutil.copytree(ROOT / "src/medaug/tasks", tmp_path / "src/medaug/tasks")  # the task file params.yaml names
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace("  learning_rate: 0.0002\n", "  learning_rate: .nan\n"))
    r = subprocess.run([sys.executable, "-m", "medaug.cli", "check-params", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "error: params.yaml: train.learning_rate = nan must be a finite number\n"

"""`medaug report`: the Markdown table from metrics files, and its Δ columns from `dvc metrics diff` (run as a dvc
process, also under CliRunner). Without metrics files: tests/unit/test_report.py."""

import json
import subprocess
import sys

from click.testing import CliRunner

from medaug import headline
from medaug.cli import cli
from medaug.report import render

DVC_YAML = """stages:
  evaluate:
    cmd: "true"
    metrics:
      - metrics/eval/tiny-augmented.json:
          cache: false
      - metrics/eval/tiny-zero-shot.json:
          cache: false
      - metrics/eval/tiny-original.json:
          cache: false
"""


def metrics(root, name, accuracy, macro_f1, p=None, ci=True, path=None):
    """The headline the evaluate stage writes (medaug.headline.scores) of a report with these scores."""
    m = {"accuracy": accuracy, "macro_f1": macro_f1, "n": 500}
    if ci:
        m["ci95"] = {"accuracy": {"low": accuracy - 0.04, "high": accuracy + 0.04},
                     "macro_f1": {"low": macro_f1 - 0.05, "high": macro_f1 + 0.05}}
    m.update({"model": "tiny", "variant": name.removeprefix("tiny-")})
    if p is not None:
        m["vs_zero_shot"] = {"p_value": p, "a_only": 30, "b_only": 10, "delta_accuracy": 0.04}
    m["per_class"] = {}
    target = path or root / "metrics" / "eval" / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(headline.scores(m)))


def table(text):
    """{first cell: the other cells} of the Markdown table."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_report_without_git_shows_dashes_and_says_why(tmp_path, monkeypatch):
    metrics(tmp_path, "tiny-zero-shot", 0.55, 0.4)
    metrics(tmp_path, "tiny-augmented", 0.6, 0.45, p=0.0001)
    teacher = {"accuracy": 0.7, "macro_f1": 0.5, "n": 500, "model": "gpt-4o", "variant": "teacher-3-shot"}
    (tmp_path / "metrics" / "teacher.json").write_text(json.dumps(headline.scores(teacher)))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "teacher.json").write_text(json.dumps(teacher))
    (tmp_path / "reports" / "register.json").write_text(json.dumps(
        {"model_name": "medaug-pubmedqa", "version": 2, "alias": "challenger", "candidate": "tiny-augmented",
         "metric": "accuracy", "value": 0.6, "policy": "mcnemar",
         "vs_champion": {"p_value": 0.2, "a_only": 5, "b_only": 3}, "previous_champion_version": 1,
         "candidates": {"tiny-augmented": {"accuracy": 0.6, "macro_f1": 0.45, "p_vs_champion": 0.2}}}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "report.md"
    result = CliRunner().invoke(cli, ["report", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    rows = table(text)
    assert rows["**tiny-augmented** (v2 @challenger)"] == \
        ["0.600 [0.560, 0.640]", "0.450 [0.400, 0.500]", "<0.001", "0.200", "–", "–"]
    assert rows["tiny-zero-shot"] == ["0.550 [0.510, 0.590]", "0.400 [0.350, 0.450]", "–", "–", "–", "–"]
    assert rows["teacher-3-shot (gpt-4o)"] == ["0.700", "0.500", "–", "–", "–", "–"]
    assert "Registered `medaug-pubmedqa` v2 = tiny-augmented as **@challenger** (accuracy 0.600, policy mcnemar; " \
        "McNemar p vs the previous champion 0.200)." in text
    assert "Δ columns unavailable: `dvc metrics diff HEAD` failed: Only supported for Git repositories" in text
    assert list(tmp_path.joinpath("out").iterdir()) == [out]  # no temp file left
    assert CliRunner().invoke(cli, ["report"]).output == text  # stdout by default


def test_report_deltas_come_from_dvc_metrics_diff(tmp_path):
    def run(*cmd):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    metrics(tmp_path, "tiny-zero-shot", 0.5, 0.4)
    metrics(tmp_path, "tiny-augmented", 0.6, 0.45, p=0.03)
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "v1")
    first = render(tmp_path, "HEAD")
    assert table(first)["tiny-augmented"][4:] == ["+0.000", "+0.000"] and "unavailable" not in first

    metrics(tmp_path, "tiny-augmented", 0.652, 0.425, p=0.01)  # the change a pull request brings
    metrics(tmp_path, "tiny-original", 0.58, 0.41, p=0.2)  # a new candidate
    rows = table(render(tmp_path, "HEAD"))
    assert rows["tiny-augmented"] == ["0.652 [0.612, 0.692]", "0.425 [0.375, 0.475]", "0.010", "–", "+0.052", "-0.025"]
    assert rows["tiny-zero-shot"][4:] == ["+0.000", "+0.000"]
    assert rows["tiny-original"][4:] == ["new", "new"]
    assert "unavailable" in render(tmp_path, "no-such-rev")

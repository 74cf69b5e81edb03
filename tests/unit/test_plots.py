"""Plots people look at (issue 16), in process: the rows compare writes for the candidates and curves charts, and
the plot targets. The page drawn offline in headless Chromium and the charts' scenegraphs, on a real `dvc plots`
project: tests/integration/test_plots.py.
"""

from __future__ import annotations

import re

import pytest

from medaug import plots
from medaug.data.jsonl import write_json
from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.evaluate import compare
from medaug.params import parse_params


# --- the rows compare writes -----------------------------------------------------------------------------------------

TEST = [Record(id=f"q{i}", question="q?", contexts=["c"], final_decision=label)
        for i, label in enumerate(["no"] * 5 + ["yes"] * 4 + ["maybe"])]


def params(**pretrain):
    return parse_params({"models": {"tiny": "tiny-llama"}, "pretrain": pretrain,
                         "train": {"models": ["tiny"], "variants": ["original", "augmented"], "seeds": [0]}})


def scores(accuracy: float, macro_f1: float, ci: bool = True) -> dict:
    m = {"accuracy": accuracy, "macro_f1": macro_f1, "n": 10}
    if ci:
        m["ci95"] = {"accuracy": {"low": accuracy - 0.1, "high": accuracy + 0.1},
                     "macro_f1": {"low": macro_f1 - 0.2, "high": macro_f1 + 0.1}}
    return m


@pytest.fixture
def metrics(tmp_path):
    for name, acc in (("tiny-zero-shot", 0.3), ("tiny-original-0", 0.6), ("tiny-augmented-0", 0.7)):
        write_json(tmp_path / "eval" / f"{name}.json", scores(acc, acc - 0.1))
    write_json(tmp_path / "teacher.json", scores(0.8, 0.75))
    write_json(tmp_path / "teacher-report.json", {"variant": "teacher-3-shot", "model": "gpt-4o"})
    return tmp_path


def test_candidates_rows_carry_each_ci_and_the_baselines(metrics):
    rows = compare.candidates_plot(params(), TEST, metrics / "eval", metrics / "teacher.json",
                                   metrics / "teacher-report.json")
    assert [(r["candidate"], r["role"], r["metric"]) for r in rows[::2]] == [
        ("tiny-zero-shot", "zero-shot", "accuracy"), ("tiny-original-0", "trained", "accuracy"),
        ("tiny-augmented-0", "trained", "accuracy"), ("teacher-3-shot (gpt-4o)", "teacher", "accuracy"),
        ("majority class (no)", "majority", "accuracy")]
    augmented = {r["metric"]: r for r in rows if r["candidate"] == "tiny-augmented-0"}
    assert (augmented["accuracy"]["value"], augmented["accuracy"]["low"], augmented["accuracy"]["high"]) \
        == pytest.approx((0.7, 0.6, 0.8))
    assert (augmented["macro_f1"]["low"], augmented["macro_f1"]["high"]) == pytest.approx((0.4, 0.7))
    majority = {r["metric"]: r for r in rows if r["role"] == "majority"}
    p = 5 / 10  # always "no": accuracy is its share; macro-F1 its F1 (precision p, recall 1) over 3 labels
    assert majority["accuracy"]["value"] == p
    assert majority["macro_f1"]["value"] == pytest.approx(2 * p / (1 + p) / 3)
    assert majority["accuracy"]["low"] is None and majority["accuracy"]["high"] is None


def test_without_bootstrap_a_candidate_has_no_ci_and_a_missing_file_is_named(metrics):
    write_json(metrics / "eval" / "tiny-original-0.json", scores(0.6, 0.5, ci=False))  # evaluate.bootstrap: 0
    rows = compare.candidates_plot(params(), TEST, metrics / "eval", metrics / "teacher.json",
                                   metrics / "teacher-report.json")
    assert [(r["value"], r["low"], r["high"]) for r in rows if r["candidate"] == "tiny-original-0"] \
        == [(0.6, None, None), (0.5, None, None)]
    (metrics / "teacher.json").unlink()
    with pytest.raises(MedaugError, match=r"teacher.json: not found; run `dvc repro`"):
        compare.candidates_plot(params(), TEST, metrics / "eval", metrics / "teacher.json",
                                metrics / "teacher-report.json")


def test_curves_overlay_every_candidate(tmp_path):
    for name in ("tiny-original-0", "tiny-augmented-0", "tiny-dapt-original-0", "pretrain-tiny"):
        write_json(tmp_path / f"{name}.json", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
    p = params(models=["tiny"], variants=["original"])
    rows = compare.curves_plot(p, tmp_path, pretrain=True)
    assert [(r["candidate"], r["recipe"], r["step"]) for r in rows[::2]] == [
        ("tiny-original-0", "tiny-original", 1), ("tiny-augmented-0", "tiny-augmented", 1),
        ("tiny-dapt-original-0", "tiny-dapt-original", 1), ("pretrain-tiny", "pretrain-tiny", 1)]
    assert rows[1] == {"candidate": "tiny-original-0", "recipe": "tiny-original", "step": 2, "loss": 1.0}
    assert "pretrain-tiny" not in {r["candidate"] for r in compare.curves_plot(p, tmp_path, pretrain=False)}


def test_plot_targets_select_one_definition():
    assert plots.target("Accuracy by recipe (mean over train.seeds)") \
        == "Accuracy by recipe [(]mean over train[.]seeds[)]$"
    assert re.match(plots.target("plots/funnel.json"), "plots/funnel.json")
    assert not re.match(plots.target("plots/funnel.json"), "plots/funnel-json")
    assert plots.slug("plots/per_class/tiny-original-0.json") == "per_class-tiny-original-0"

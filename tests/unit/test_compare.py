"""The recipes table (stage `compare`, `medaug report`): mean ± sd over seeds recomputed from each seed's
predictions, Δ vs original with its two-level bootstrap, and the cost per accuracy point."""

import json
import statistics

import pytest

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate import compare
from medaug.evaluate.metrics import compute_metrics
from medaug.params import parse_params
from medaug.paths import CompareIO
from medaug.report import recipes_table

N = 60
TEST = [Record(id=f"q{i}", question=f"q {i}?", contexts=["c"], final_decision=("yes", "no", "maybe")[i % 3])
        for i in range(N)]
GOLDS = [r.final_decision for r in TEST]
RIGHT = {("original", 0): 30, ("original", 1): 34, ("augmented", 0): 45, ("augmented", 1): 39}


def preds(k):
    """Right on the first k items, wrong on the rest."""
    return [g if i < k else ("no" if g == "yes" else "yes") for i, g in enumerate(GOLDS)]


@pytest.fixture
def compare_project(tmp_path):
    write_records(tmp_path / "test.jsonl", TEST)
    for (variant, seed), k in RIGHT.items():
        write_jsonl(tmp_path / "eval" / f"tiny-{variant}-{seed}" / "predictions.jsonl",
                    ({"id": r.id, "gold": r.final_decision, "prediction": y} for r, y in zip(TEST, preds(k))))
    write_json(tmp_path / "dataset/original.json", {"items": 100, "generated": 0, "teacher_cost_usd": 0.0})
    write_json(tmp_path / "dataset/augmented.json", {"items": 124, "generated": 24, "teacher_cost_usd": 0.6})
    return tmp_path


def params(**train):
    return parse_params({"models": {"tiny": "tiny-llama"},
                         "train": {"models": ["tiny"], "variants": ["original", "augmented"], "seeds": [0, 1], **train},
                         "evaluate": {"bootstrap": 500}})


def test_two_seeds_give_the_mean_and_sd_of_the_per_seed_metrics(compare_project):
    rows = compare.run(params(), CompareIO(compare_project / "test.jsonl", compare_project / "eval",
                                              compare_project / "dataset", compare_project / "reports/variants.json",
                                              compare_project / "plots/variants.json"))
    assert [(r["model"], r["variant"], r["seeds"]) for r in rows] == [("tiny", "original", [0, 1]),
                                                                    ("tiny", "augmented", [0, 1])]
    for row in rows:
        per_seed = [compute_metrics(GOLDS, preds(RIGHT[row["variant"], s])) for s in (0, 1)]
        for key in ("accuracy", "macro_f1"):
            values = [m[key] for m in per_seed]
            assert row[key]["per_seed"] == values
            assert row[key]["mean"] == pytest.approx(statistics.fmean(values))
            assert row[key]["sd"] == pytest.approx(statistics.stdev(values))
        ci = row["accuracy"]["ci95"]
        assert ci["low"] < row["accuracy"]["mean"] < ci["high"]
    original, augmented = rows
    assert "vs_original" not in original
    vs = augmented["vs_original"]
    assert vs["delta"] == pytest.approx((45 + 39 - 30 - 34) / 2 / N)
    assert vs["low"] < vs["delta"] < vs["high"] and 0 < vs["p_value"] < 0.05
    assert vs["usd_per_point"] == pytest.approx(0.6 / (100 * vs["delta"]))
    assert (augmented["items"], augmented["generated"], augmented["teacher_cost_usd"]) == (124, 24, 0.6)
    saved = json.loads((compare_project / "reports/variants.json").read_text())
    assert saved["recipes"] == json.loads(json.dumps(rows)) and saved["seeds"] == [0, 1]
    plot = json.loads((compare_project / "plots/variants.json").read_text())
    assert [(r["recipe"], r["generated"]) for r in plot] == [("tiny-original", 0), ("tiny-augmented", 24)]
    assert plot[1]["accuracy"] == augmented["accuracy"]["mean"]

    lines = recipes_table(saved)
    assert lines[0].startswith("### Recipes (mean ± sd over 2 seeds; Δ and p vs `original`")
    acc, f1 = augmented["accuracy"], augmented["macro_f1"]
    assert lines[-1].startswith(f"| tiny-augmented | 124 (24) | {acc['mean']:.3f} ± {acc['sd']:.3f} "
                                f"[{acc['ci95']['low']:.3f}, {acc['ci95']['high']:.3f}] | "
                                f"{f1['mean']:.3f} ± {f1['sd']:.3f} | {vs['delta']:+.3f} [")
    assert lines[-1].endswith(f"| 0.6000 | {vs['usd_per_point']:.4f} |")
    assert lines[-2].startswith("| tiny-original | 100 (0) |") and lines[-2].endswith("| – | – | 0.0000 | – |")


def test_a_missing_seed_names_the_file_and_the_fix(compare_project):
    p = params(seeds=[0, 1, 2])
    with pytest.raises(MedaugError, match=r"tiny-original-2/predictions.jsonl: not found; run `dvc repro`"):
        compare.run(p, CompareIO(compare_project / "test.jsonl", compare_project / "eval", compare_project / "dataset",
                                 compare_project / "r.json", compare_project / "p.json"))

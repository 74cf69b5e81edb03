"""Bootstrap confidence intervals and the paired exact McNemar test."""

import random

import numpy as np
import pytest

from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.stats import bootstrap_ci, mcnemar

LABELS = ["yes", "no", "maybe"]


def noisy(n, accuracy, seed=0):
    rng = random.Random(seed)
    golds = [rng.choice(LABELS) for _ in range(n)]
    preds = [g if rng.random() < accuracy else rng.choice(["yes", "no", "maybe", "unparsed"]) for g in golds]
    return golds, preds


def test_bootstrap_ci_contains_the_point_estimate_and_is_seeded():
    golds, preds = noisy(200, 0.6)
    m = compute_metrics(golds, preds)
    ci = bootstrap_ci(golds, preds, 500, seed=0)
    for key in ("accuracy", "macro_f1"):
        assert 0 <= ci[key]["low"] < m[key] < ci[key]["high"] <= 1
    assert ci["accuracy"]["high"] - ci["accuracy"]["low"] < 0.2
    assert bootstrap_ci(golds, preds, 500, seed=0) == ci
    assert bootstrap_ci(golds, preds, 500, seed=1) != ci
    narrow = bootstrap_ci(golds, preds, 500, seed=0, level=0.5)
    assert ci["accuracy"]["low"] <= narrow["accuracy"]["low"] <= narrow["accuracy"]["high"] <= ci["accuracy"]["high"]


def test_bootstrap_macro_f1_is_compute_metrics_on_each_resample():
    golds, preds = noisy(40, 0.5, seed=3)
    ci = bootstrap_ci(golds, preds, 50, seed=7)
    idx = np.random.default_rng(7).integers(0, 40, size=(50, 40))  # the same resamples
    for key in ("accuracy", "macro_f1"):
        values = [compute_metrics([golds[i] for i in row], [preds[i] for i in row])[key] for row in idx]
        low, high = np.percentile(values, [2.5, 97.5])
        assert ci[key] == {"low": pytest.approx(low), "high": pytest.approx(high)}


def test_bootstrap_all_correct_is_one_one():
    golds = ["yes", "no", "maybe"] * 10
    assert bootstrap_ci(golds, golds, 200, seed=0) == {"accuracy": {"low": 1.0, "high": 1.0},
                                                       "macro_f1": {"low": 1.0, "high": 1.0}}
    unparsed = bootstrap_ci(golds, ["unparsed"] * 30, 50, seed=0)  # outside the label set: wrong
    assert unparsed == {"accuracy": {"low": 0.0, "high": 0.0}, "macro_f1": {"low": 0.0, "high": 0.0}}
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        bootstrap_ci(["yes", "no"], ["yes"], 10, seed=0)


def test_mcnemar_hand_computed():
    # 1 item only a got right, 7 only b got right, 2 both right, 1 both wrong (with different answers)
    golds = ["yes"] * 11
    a = ["yes"] + ["no"] * 7 + ["yes", "yes"] + ["no"]
    b = ["no"] + ["yes"] * 7 + ["yes", "yes"] + ["maybe"]
    r = mcnemar(golds, a, b)
    assert (r["a_only"], r["b_only"]) == (1, 7)
    assert r["p_value"] == pytest.approx(2 * (1 + 8) / 256)  # 2 P(X <= 1), X ~ Bin(8, 1/2)
    assert mcnemar(golds, b, a) == {"a_only": 7, "b_only": 1, "p_value": r["p_value"]}
    assert mcnemar(golds, a, a) == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    assert mcnemar(["yes"] * 4, ["yes", "no", "yes", "no"], ["no", "yes", "no", "yes"])["p_value"] == 1.0  # capped


def test_one_seed_gives_the_item_bootstrap_interval():
    from medaug.evaluate.stats import seed_bootstrap_ci
    golds, preds = noisy(200, 0.6)
    assert seed_bootstrap_ci(golds, [preds], 500, 7) == bootstrap_ci(golds, preds, 500, 7)["accuracy"]


def test_seed_variance_widens_the_interval_and_the_p_value():
    """Two runs at 0.9 and 0.5 have the mean of two runs at 0.7, but the recipe is less certain."""
    from medaug.evaluate.stats import seed_bootstrap, seed_bootstrap_ci
    golds = ["yes"] * 200
    right = lambda k: ["yes"] * k + ["no"] * (200 - k)  # noqa: E731
    steady, noisy = [right(140), right(140)], [right(180), right(100)]
    width = {name: (lambda ci: ci["high"] - ci["low"])(seed_bootstrap_ci(golds, runs, 2000, 0))
             for name, runs in (("steady", steady), ("noisy", noisy))}
    assert width["noisy"] > 2 * width["steady"]
    base = [right(120), right(120)]
    vs_steady, vs_noisy = (seed_bootstrap(golds, runs, base, 2000, 0) for runs in (steady, noisy))
    assert vs_steady["delta"] == pytest.approx(0.1) == vs_noisy["delta"]
    assert vs_steady["p_value"] < 0.01 < vs_noisy["p_value"]
    assert vs_noisy["low"] < 0 < vs_steady["low"]
    assert seed_bootstrap(golds, base, base, 500, 0) == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}

"""Bootstrap confidence intervals (BCa and percentile, on scipy), the paired Δ accuracy interval and the paired
exact McNemar test."""

import math
import random

import numpy as np
import pytest
from scipy import stats

from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.stats import bootstrap_ci, mcnemar, paired_delta_ci
from medaug.params import parse_params

LABELS = ["yes", "no", "maybe"]


def noisy(n, accuracy, seed=0):
    rng = random.Random(seed)
    golds = [rng.choice(LABELS) for _ in range(n)]
    preds = [g if rng.random() < accuracy else rng.choice(["yes", "no", "maybe", "unparsed"]) for g in golds]
    return golds, preds


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_ci_contains_the_point_estimate_and_is_seeded(method):
    golds, preds = noisy(200, 0.6)
    m = compute_metrics(golds, preds)
    ci = bootstrap_ci(golds, preds, 500, seed=0, method=method)
    assert ci["method"] == method
    for key in ("accuracy", "macro_f1"):
        assert 0 <= ci[key]["low"] < m[key] < ci[key]["high"] <= 1
    assert ci["accuracy"]["high"] - ci["accuracy"]["low"] < 0.2
    assert bootstrap_ci(golds, preds, 500, seed=0, method=method) == ci
    assert bootstrap_ci(golds, preds, 500, seed=1, method=method) != ci
    narrow = bootstrap_ci(golds, preds, 500, seed=0, level=0.5, method=method)
    assert ci["accuracy"]["low"] <= narrow["accuracy"]["low"] <= narrow["accuracy"]["high"] <= ci["accuracy"]["high"]


def test_bca_is_the_default_and_differs_from_percentile_on_a_skewed_score():
    """Accuracy 0.9 on 40 items: the bootstrap distribution is skewed towards 1, so BCa moves the interval
    (bias-corrected, accelerated) where the percentile interval does not; both contain the point estimate."""
    golds, preds = noisy(40, 0.9, seed=5)
    m = compute_metrics(golds, preds)
    bca, pct = bootstrap_ci(golds, preds, 2000, seed=0), bootstrap_ci(golds, preds, 2000, seed=0, method="percentile")
    assert bca["method"] == "bca" and pct["method"] == "percentile"
    for key in ("accuracy", "macro_f1"):
        assert bca[key] != pct[key]
        for ci in (bca, pct):
            assert 0 <= ci[key]["low"] < m[key] < ci[key]["high"] <= 1


def test_bca_is_scipys_bca_on_the_same_resamples():
    """The wiring: the same seed gives scipy.stats.bootstrap's own BCa interval, for accuracy (the mean of the
    per-item hits) and for macro-F1 (compute_metrics on each paired resample)."""
    golds, preds = noisy(40, 0.7, seed=2)
    ci = bootstrap_ci(golds, preds, 300, seed=11)
    hits = np.array([g == q for g, q in zip(golds, preds)], dtype=float)
    acc = stats.bootstrap((hits,), np.mean, n_resamples=300, method="BCa", rng=np.random.default_rng(11))
    assert ci["accuracy"] == {"low": pytest.approx(acc.confidence_interval.low),
                              "high": pytest.approx(acc.confidence_interval.high)}
    f1 = stats.bootstrap((np.array(golds), np.array(preds)),
                         lambda g, q: compute_metrics(list(g), list(q))["macro_f1"], vectorized=False, paired=True,
                         n_resamples=300, method="BCa", rng=np.random.default_rng(11))
    assert ci["macro_f1"] == {"low": pytest.approx(f1.confidence_interval.low),
                              "high": pytest.approx(f1.confidence_interval.high)}
    assert bootstrap_ci(golds, preds, 300, seed=12)["accuracy"] != ci["accuracy"]


def test_bootstrap_percentile_macro_f1_is_compute_metrics_on_each_resample():
    golds, preds = noisy(40, 0.5, seed=3)
    ci = bootstrap_ci(golds, preds, 50, seed=7, method="percentile")
    idx = np.random.default_rng(7).integers(0, 40, size=(50, 40))  # the same resamples
    for key in ("accuracy", "macro_f1"):
        values = [compute_metrics([golds[i] for i in row], [preds[i] for i in row])[key] for row in idx]
        low, high = np.percentile(values, [2.5, 97.5])
        assert ci[key] == {"low": pytest.approx(low), "high": pytest.approx(high)}


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_all_correct_is_one_one_without_nan(method):
    """BCa is undefined on a degenerate distribution (scipy: NaN and a warning): the percentile interval instead."""
    golds = ["yes", "no", "maybe"] * 10
    with_method = {"method": method}
    assert bootstrap_ci(golds, golds, 200, seed=0, method=method) == {
        "accuracy": {"low": 1.0, "high": 1.0}, "macro_f1": {"low": 1.0, "high": 1.0}, **with_method}
    unparsed = bootstrap_ci(golds, ["unparsed"] * 30, 50, seed=0, method=method)  # outside the label set: wrong
    assert unparsed == {"accuracy": {"low": 0.0, "high": 0.0}, "macro_f1": {"low": 0.0, "high": 0.0}, **with_method}
    one = bootstrap_ci(["yes"], ["yes"], 20, seed=0, method=method)  # one item: every resample is that item
    assert one == {"accuracy": {"low": 1.0, "high": 1.0}, "macro_f1": {"low": 1 / 3, "high": 1 / 3}, **with_method}
    for golds_, preds_ in ((["yes", "no"], ["yes", "yes"]), (["yes", "no", "no"], ["yes", "yes", "no"])):  # tiny
        ci = bootstrap_ci(golds_, preds_, 100, seed=0, method=method)
        assert all(math.isfinite(ci[k][end]) for k in ("accuracy", "macro_f1") for end in ("low", "high"))
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        bootstrap_ci(["yes", "no"], ["yes"], 10, seed=0)
    with pytest.raises(ValueError, match="interval method 'foo' is not one of bca, percentile"):
        bootstrap_ci(golds, golds, 10, seed=0, method="foo")


def test_ci_method_is_a_param_with_its_allowed_values():
    assert parse_params({}).evaluate.ci_method == "bca"
    assert parse_params({"evaluate": {"ci_method": "percentile"}}).evaluate.ci_method == "percentile"
    with pytest.raises(MedaugError, match=r"evaluate\.ci_method = 'foo' is not allowed \(allowed: bca, percentile\)"):
        parse_params({"evaluate": {"ci_method": "foo"}})


def correlated(n=200, seed=0):
    """Two systems that are right and wrong mostly on the same items (b fixes a few of a's errors)."""
    rng = random.Random(seed)
    golds = [rng.choice(LABELS) for _ in range(n)]
    hard = [rng.random() < 0.4 for _ in golds]
    a = [("no" if g == "yes" else "yes") if h else g for g, h in zip(golds, hard)]
    b = [g if h and rng.random() < 0.2 else x for g, x, h in zip(golds, a, hard)]
    return golds, a, b


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_paired_delta_ci_contains_the_delta_and_is_narrower_than_unpaired(method):
    golds, a, b = correlated()
    right_a = np.array([x == g for g, x in zip(golds, a)], dtype=float)
    right_b = np.array([x == g for g, x in zip(golds, b)], dtype=float)
    delta = right_b.mean() - right_a.mean()
    assert delta > 0
    ci = paired_delta_ci(golds, b, a, 2000, seed=0, method=method)
    assert set(ci) == {"low", "high"} and ci["low"] < delta < ci["high"]
    assert ci["low"] > 0  # the paired interval sees the gain: b is never wrong where a is right
    unpaired = stats.bootstrap((right_b, right_a), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=False,
                               n_resamples=2000, method="BCa" if method == "bca" else method,
                               rng=np.random.default_rng(0)).confidence_interval
    assert unpaired.low < 0 < unpaired.high  # independent intervals miss it
    assert ci["high"] - ci["low"] < (unpaired.high - unpaired.low) / 2
    assert paired_delta_ci(golds, b, a, 2000, seed=0, method=method) == ci
    # swapped: the mirror interval (BCa's bias correction is symmetric too)
    swapped = paired_delta_ci(golds, a, b, 2000, seed=0, method=method)
    assert (swapped["low"], swapped["high"]) == (pytest.approx(-ci["high"]), pytest.approx(-ci["low"]))
    # same hits on every item: a degenerate distribution, [0, 0] and no NaN
    assert paired_delta_ci(golds, a, list(a), 500, seed=0, method=method) == {"low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="3 gold labels but 3 and 2 predictions"):
        paired_delta_ci(["yes"] * 3, ["yes"] * 3, ["yes"] * 2, 10, seed=0)


def test_mcnemar_hand_computed():
    # 1 item only a got right, 7 only b got right, 2 both right, 1 both wrong (with different answers)
    golds = ["yes"] * 11
    a = ["yes"] + ["no"] * 7 + ["yes", "yes"] + ["no"]
    b = ["no"] + ["yes"] * 7 + ["yes", "yes"] + ["maybe"]
    r = mcnemar(golds, a, b)
    assert (r["a_only"], r["b_only"]) == (1, 7)
    assert r["p_value"] == pytest.approx(2 * (1 + 8) / 256)  # 2 P(X <= 1), X ~ Bin(8, 1/2)
    # b = 1, c = 6: 2 P(X <= 1), X ~ Bin(7, 1/2) = 2 (1 + 7) / 128
    assert mcnemar(["yes"] * 7, ["yes"] + ["no"] * 6, ["no"] + ["yes"] * 6) == {
        "a_only": 1, "b_only": 6, "p_value": pytest.approx(0.125)}
    # 6 discordant pairs all one way: 2 / 2**6; one discordant pair: capped at 1
    assert mcnemar(["yes"] * 6, ["yes"] * 6, ["no"] * 6)["p_value"] == pytest.approx(0.03125)
    assert mcnemar(["yes"], ["yes"], ["no"])["p_value"] == 1.0
    assert mcnemar(golds, b, a) == {"a_only": 7, "b_only": 1, "p_value": r["p_value"]}
    assert mcnemar(golds, a, a) == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    assert mcnemar(["yes"] * 4, ["yes", "no", "yes", "no"], ["no", "yes", "no", "yes"])["p_value"] == 1.0  # capped


def test_one_seed_gives_the_item_bootstrap_interval():
    from medaug.evaluate.stats import seed_bootstrap_ci
    golds, preds = noisy(200, 0.6)
    ci = bootstrap_ci(golds, preds, 500, 7, method="percentile")["accuracy"]
    assert seed_bootstrap_ci(golds, [preds], 500, 7) == {"low": pytest.approx(ci["low"]),
                                                         "high": pytest.approx(ci["high"])}


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

"""Uncertainty of a test score: percentile bootstrap CIs of accuracy and macro-F1, and the paired exact McNemar test.

Both work on label lists, like compute_metrics; a prediction outside the label set (e.g. the teacher baseline's
"unparsed") is simply wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medaug.data.schema import LABELS


def _codes(values: list[str], labels: Sequence[str]) -> np.ndarray:
    """Label index, or len(labels) for anything else."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(v, len(labels)) for v in values], dtype=np.int64)


def bootstrap_ci(golds: list[str], preds: list[str], n_resamples: int, seed: int, level: float = 0.95,
                 labels: Sequence[str] = LABELS) -> dict[str, dict[str, float]]:
    """{"accuracy": {"low", "high"}, "macro_f1": {"low", "high"}}: percentile bootstrap over test items.

    One (n_resamples, n) index matrix from numpy's seeded Generator; per-class counts by one bincount per count
    kind. Macro-F1 as compute_metrics defines it (F1 = 2 tp / (gold + predicted), 0 when both are 0)."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    if not golds or n_resamples < 1:
        raise ValueError(f"bootstrap needs items and resamples (got {len(golds)} items, {n_resamples} resamples)")
    if unknown := sorted(set(golds) - set(labels)):
        raise ValueError(f"gold labels {unknown} are not in {list(labels)}")
    k, n = len(labels), len(golds)
    g, q = _codes(golds, labels), _codes(preds, labels)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    g, q = g[idx], q[idx]
    correct = g == q  # golds are labels, so an unknown prediction is never correct
    offset = (np.arange(n_resamples) * (k + 1))[:, None]

    def counts(codes: np.ndarray) -> np.ndarray:  # (n_resamples, k): occurrences of each label per resample
        return np.bincount((codes + offset).ravel(), minlength=n_resamples * (k + 1)).reshape(n_resamples, k + 1)[:, :k]

    tp = counts(np.where(correct, g, k))
    denom = counts(g) + counts(q)
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, values in (("accuracy", correct.mean(axis=1)), ("macro_f1", f1.mean(axis=1))):
        low, high = np.percentile(values, [tail, 100 - tail])
        out[name] = {"low": float(low), "high": float(high)}
    return out


def mcnemar(golds: list[str], preds_a: list[str], preds_b: list[str]) -> dict[str, float | int]:
    """Paired exact McNemar test: a_only = items a got right and b wrong, b_only the reverse;
    p = min(1, 2 P(X <= min(a_only, b_only))), X ~ Binomial(a_only + b_only, 1/2); 1.0 with no discordant pair."""
    if not len(golds) == len(preds_a) == len(preds_b):
        raise ValueError(f"{len(golds)} gold labels but {len(preds_a)} and {len(preds_b)} predictions")
    b = sum(x == g != y for g, x, y in zip(golds, preds_a, preds_b))
    c = sum(y == g != x for g, x, y in zip(golds, preds_a, preds_b))
    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)
    return {"a_only": b, "b_only": c, "p_value": p}


def seed_bootstrap(golds: list[str], runs_a: list[list[str]], runs_b: list[list[str]], n_resamples: int,
                   seed: int, level: float = 0.95) -> dict[str, float]:
    """Accuracy of recipe a minus recipe b, each the mean over its seeds' runs, with a two-level bootstrap that
    carries both sources of noise: every resample draws the test items (the same for a and b: paired) and, for
    each recipe on its own, its seeds, with replacement. {delta, low, high, p_value}: the observed difference of
    the means, its percentile interval, and the two-sided bootstrap p = 2 min(P(Δ* <= 0), P(Δ* >= 0)), at most 1.
    With one seed each this is the paired bootstrap over test items."""
    if not runs_a or not runs_b or n_resamples < 1:
        raise ValueError("seed_bootstrap needs at least one run per recipe and one resample")
    right_a, right_b = _right(golds, runs_a), _right(golds, runs_b)
    rng = np.random.default_rng(seed)
    items = rng.integers(0, len(golds), size=(n_resamples, len(golds)))
    deltas = _resampled(right_a, items, rng) - _resampled(right_b, items, rng)
    low, high = np.percentile(deltas, _tails(level))
    p = min(1.0, 2 * min(float((deltas <= 0).mean()), float((deltas >= 0).mean())))
    return {"delta": float(right_a.mean() - right_b.mean()), "low": float(low), "high": float(high), "p_value": p}


def seed_bootstrap_ci(golds: list[str], runs: list[list[str]], n_resamples: int, seed: int,
                      level: float = 0.95) -> dict[str, float]:
    """{low, high}: the percentile interval of one recipe's mean accuracy over its seeds' runs, resampling test
    items and seeds as seed_bootstrap does (with one seed: bootstrap_ci's accuracy interval)."""
    right = _right(golds, runs)
    rng = np.random.default_rng(seed)
    low, high = np.percentile(_resampled(right, rng.integers(0, len(golds), size=(n_resamples, len(golds))), rng),
                              _tails(level))
    return {"low": float(low), "high": float(high)}


def _right(golds: list[str], runs: list[list[str]]) -> np.ndarray:
    """(runs, items): whether each run's prediction equals the gold answer."""
    if any(len(r) != len(golds) for r in runs):
        raise ValueError(f"{len(golds)} gold labels but runs of {sorted({len(r) for r in runs})} predictions")
    return np.array([[p == g for p, g in zip(r, golds)] for r in runs], dtype=bool).reshape(len(runs), len(golds))


def _tails(level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    return [tail, 100 - tail]


def _resampled(right: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean accuracy over seeds drawn with replacement, on each row of drawn `items`: (resamples,)."""
    per_seed = right[:, items].mean(axis=2).T  # (resamples, seeds): each seed's accuracy on the drawn items
    seeds = rng.integers(0, right.shape[0], size=per_seed.shape)
    return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)

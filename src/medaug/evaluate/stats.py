"""Uncertainty of a test score, on scipy: bootstrap CIs of accuracy and macro-F1 (BCa by default, percentile as an
option), the paired bootstrap CI of a difference in accuracy, and the paired exact McNemar test.

All work on label lists, like compute_metrics; a prediction outside the label set (e.g. the teacher baseline's
"unparsed") is simply wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from medaug.data.schema import LABELS

CI_METHODS = ("bca", "percentile")
"""evaluate.ci_method: scipy.stats.bootstrap's `BCa` (bias-corrected and accelerated) or `percentile` interval."""


def _codes(values: list[str], labels: Sequence[str]) -> np.ndarray:
    """Label index, or len(labels) for anything else."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(v, len(labels)) for v in values], dtype=np.int64)


def _interval(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], n_resamples: int, seed: int,
              level: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a vectorized, paired `statistic` (one value, or a vector of them, per resample) from
    scipy.stats.bootstrap over the items, resampled by numpy's Generator seeded with `seed`.

    BCa is undefined when the bootstrap distribution is degenerate (every resample scores the same, e.g. all
    predictions right or all wrong) or the items too few for its jackknife: scipy then warns and returns NaN.
    Each such interval falls back to the percentile interval of the same resamples; with one item, every resample
    is that item and the interval is the point estimate. No NaN comes out."""
    if method not in CI_METHODS:
        raise ValueError(f"interval method {method!r} is not one of {', '.join(CI_METHODS)}")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1) (got {level})")
    if len(data[0]) < 2:  # scipy needs two items; every resample of one item is that item
        point = np.asarray(statistic(*data, axis=-1), dtype=float)
        return point, point
    kwargs = {"paired": True, "vectorized": True, "confidence_level": level}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in BCa's acceleration on a degenerate distribution
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, method="BCa" if method == "bca" else method,
                              rng=np.random.default_rng(seed), **kwargs)
    low, high = (np.atleast_1d(np.asarray(x, dtype=float)) for x in res.confidence_interval)
    bad = ~(np.isfinite(low) & np.isfinite(high))
    if bad.any():
        fallback = stats.bootstrap(data, statistic, n_resamples=0, method="percentile", bootstrap_result=res,
                                   **kwargs).confidence_interval  # the same resamples, no new draws
        low = np.where(bad, np.atleast_1d(fallback.low), low)
        high = np.where(bad, np.atleast_1d(fallback.high), high)
    return low, high


def bootstrap_ci(golds: list[str], preds: list[str], n_resamples: int, seed: int, level: float = 0.95,
                 labels: Sequence[str] = LABELS, method: str = "bca") -> dict[str, object]:
    """{"accuracy": {"low", "high"}, "macro_f1": {"low", "high"}, "method"}: bootstrap interval over test items
    (scipy.stats.bootstrap, paired: an item's gold label and prediction are drawn together), `method` "bca"
    (default) or "percentile" (evaluate.ci_method), deterministic given `seed`. Both metrics come from the same
    resamples. A degenerate interval (all predictions right or all wrong, one item: BCa undefined) is the
    percentile one instead (see _interval), so no NaN is written; `method` names the method asked for.

    Per-class counts by one bincount per count kind and batch of resamples. Macro-F1 as compute_metrics defines it
    (F1 = 2 tp / (gold + predicted), 0 when both are 0)."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    if not golds or n_resamples < 1:
        raise ValueError(f"bootstrap needs items and resamples (got {len(golds)} items, {n_resamples} resamples)")
    if unknown := sorted(set(golds) - set(labels)):
        raise ValueError(f"gold labels {unknown} are not in {list(labels)}")
    k = len(labels)

    def scores(g: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
        """(2, *batch): accuracy and macro-F1 of each row of items (the last axis)."""
        batch, m = g.shape[:-1], g.shape[-1]
        g, q = g.reshape(-1, m), q.reshape(-1, m)
        rows = g.shape[0]
        correct = g == q  # golds are labels, so an unknown prediction is never correct
        offset = (np.arange(rows) * (k + 1))[:, None]

        def counts(codes: np.ndarray) -> np.ndarray:  # (rows, k): occurrences of each label per row
            return np.bincount((codes + offset).ravel(), minlength=rows * (k + 1)).reshape(rows, k + 1)[:, :k]

        tp = counts(np.where(correct, g, k))
        denom = counts(g) + counts(q)
        f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
        return np.stack([correct.mean(axis=1), f1.mean(axis=1)]).reshape(2, *batch)

    low, high = _interval((_codes(golds, labels), _codes(preds, labels)), scores, n_resamples, seed, level, method)
    return {"accuracy": {"low": float(low[0]), "high": float(high[0])},
            "macro_f1": {"low": float(low[1]), "high": float(high[1])}, "method": method}


def paired_delta_ci(golds: list[str], preds_a: list[str], preds_b: list[str], n_resamples: int, seed: int,
                    level: float = 0.95, method: str = "bca") -> dict[str, float]:
    """{low, high}: the bootstrap interval of accuracy(a) - accuracy(b) on the same test items, paired (each resample
    draws items, and both a's and b's answers to them), so what the two get right together cancels out and the
    interval is narrower than two independent ones would give. `method` and the degenerate cases (e.g. a and b
    right on the same items: [0, 0]) as bootstrap_ci."""
    if not len(golds) == len(preds_a) == len(preds_b):
        raise ValueError(f"{len(golds)} gold labels but {len(preds_a)} and {len(preds_b)} predictions")
    if not golds or n_resamples < 1:
        raise ValueError(f"bootstrap needs items and resamples (got {len(golds)} items, {n_resamples} resamples)")
    right_a = np.array([p == g for p, g in zip(preds_a, golds)], dtype=float)
    right_b = np.array([p == g for p, g in zip(preds_b, golds)], dtype=float)

    def delta(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) - b.mean(axis=axis)

    low, high = _interval((right_a, right_b), delta, n_resamples, seed, level, method)
    return {"low": float(low[0]), "high": float(high[0])}


def mcnemar(golds: list[str], preds_a: list[str], preds_b: list[str]) -> dict[str, float | int]:
    """Paired exact McNemar test: a_only = items a got right and b wrong, b_only the reverse; p is the two-sided
    exact binomial test (scipy.stats.binomtest) of a_only out of the a_only + b_only discordant pairs against 1/2,
    i.e. min(1, 2 P(X <= min(a_only, b_only))), X ~ Binomial(a_only + b_only, 1/2); 1.0 with no discordant pair."""
    if not len(golds) == len(preds_a) == len(preds_b):
        raise ValueError(f"{len(golds)} gold labels but {len(preds_a)} and {len(preds_b)} predictions")
    b = sum(x == g != y for g, x, y in zip(golds, preds_a, preds_b))
    c = sum(y == g != x for g, x, y in zip(golds, preds_a, preds_b))
    p = 1.0 if b + c == 0 else min(1.0, float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))
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
    items and seeds as seed_bootstrap does (with one seed: bootstrap_ci's percentile accuracy interval)."""
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

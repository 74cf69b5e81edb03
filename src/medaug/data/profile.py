"""The profile of generated data (issue 35): per strategy and teacher, what the teacher's questions look like next
to the train split's, before and after the filter.

For each group of questions (the train split; each strategy and teacher's generated items; the same kept):
- `n`;
- `distinct_1`, `distinct_2`: distinct word unigrams and bigrams over all of them (lowercased words), the usual
  diversity measure of generated text (Li et al. 2016): 1.0 = no word repeats across the group. It falls as a
  group grows, so each group also gets `distinct_2_train`: the train split's at the same size (the mean over 20
  seeded samples of as many train questions), the fair reference, and `distinct_2_vs_train`, the ratio of the two
  (1.0: as varied as as many train questions);
- `spread`: the mean pairwise cosine distance of their MiniLM embeddings (0 = one question repeated);
- `novelty`: the mean over items of 1 - the cosine to the nearest train question (the train split's own: to the
  nearest other train question);
- `words`: question length in words, mean and 90th percentile;
- `answers`: each answer's share, beside the train split's;
- for rewrites, `fidelity_cosine`: the mean cosine of each rewrite with its parent question. Reported for what it
  is: a negation barely moves it (tests/integration/test_fidelity.py: negated 0.993-0.996, faithful 0.931-0.991),
  so it says how close a rewrite stays, not whether it asks the same thing; the `fidelity` filter step asks the
  teacher that.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from typing import Any

import numpy as np

WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def distinct(questions: list[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of `questions` (0.0 with none)."""
    grams = [tuple(ws[i:i + n]) for ws in map(words, questions) for i in range(len(ws) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def same_size(questions: list[str], n: int, samples: int = 20, seed: int = 0) -> float | None:
    """distinct-2 of `n` of `questions`, the mean over `samples` seeded draws (all of them when n >= their count)."""
    if not n or not questions:
        return None
    if n >= len(questions):
        return distinct(questions, 2)
    rng = random.Random(seed)
    return round(statistics.fmean(distinct(rng.sample(questions, n), 2) for _ in range(samples)), 4)


def _spread(vectors: np.ndarray) -> float | None:
    n = len(vectors)
    if n < 2:
        return None
    sims = vectors @ vectors.T
    return round(float(1 - (sims.sum() - np.trace(sims)) / (n * (n - 1))), 4)


def _novelty(vectors: np.ndarray, train: np.ndarray, own: bool) -> float | None:
    if not len(vectors) or len(train) < (2 if own else 1):
        return None
    sims = vectors @ train.T
    if own:  # the train split against itself: the nearest *other* question
        np.fill_diagonal(sims, -1.0)
    return round(float(1 - sims.max(1).mean()), 4)


def group(questions: list[str], answers: list[str], vectors: np.ndarray, train: np.ndarray,
          own: bool = False) -> dict[str, Any]:
    lengths = sorted(len(words(q)) for q in questions)
    shares = Counter(answers)
    return {"n": len(questions), "distinct_1": distinct(questions, 1), "distinct_2": distinct(questions, 2),
            "spread": _spread(vectors), "novelty": _novelty(vectors, train, own),
            "words": {"mean": round(statistics.fmean(lengths), 2) if lengths else 0.0,
                      "p90": lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))] if lengths else 0},
            "answers": {a: round(c / len(answers), 4) for a, c in sorted(shares.items())}}


def profile(train: list[dict[str, Any]], generated: list[dict[str, Any]], kept_ids: set[str],
            embed=None, recipes: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """{"train": its group, "groups": [{strategy, teacher, stage: generated|kept, ...group}], "kept": the group of
    every kept generated item (the headline: medaug.headline.profile), "rewrites": [{id, parent_id, kept,
    fidelity_cosine}]} of the train split and generated items (records as dicts: id,
    question, final_decision, source, parent_id, teacher). `embed`: texts -> unit vectors (default: MiniLM).
    `recipes`: each recipe's training set (data/train/<recipe>.jsonl), profiled as "recipes": [{recipe, ...group}]
    of the generated items it trains on (a recipe with none is left out)."""
    if embed is None:
        from medaug.filtering.embed import embed
    train_q = [r["question"] for r in train]
    train_v = embed(train_q)
    out: dict[str, Any] = {"train": group(train_q, [str(r["final_decision"]) for r in train], train_v, train_v,
                                          own=True), "groups": [], "rewrites": []}
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in generated:
        by.setdefault((r.get("source", ""), (r.get("teacher") or {}).get("model", "")), []).append(r)
    for (strategy, teacher), rows in sorted(by.items()):
        for stage, chosen in (("generated", rows), ("kept", [r for r in rows if r["id"] in kept_ids])):
            qs = [r["question"] for r in chosen]
            out["groups"].append({"strategy": strategy, "teacher": teacher, "stage": stage,
                                  **group(qs, [str(r["final_decision"]) for r in chosen], embed(qs), train_v),
                                  "distinct_2_train": same_size(train_q, len(qs))})
    kept = [r for r in generated if r["id"] in kept_ids]
    kept_q = [r["question"] for r in kept]
    out["kept"] = {**group(kept_q, [str(r["final_decision"]) for r in kept], embed(kept_q), train_v),
                   "distinct_2_train": same_size(train_q, len(kept_q))}
    out["recipes"] = []
    for recipe, rows in sorted((recipes or {}).items()):
        chosen = [r for r in rows if r.get("source", "original") != "original"]
        if chosen:
            qs = [r["question"] for r in chosen]
            out["recipes"].append({"recipe": recipe, **group(qs, [str(r["final_decision"]) for r in chosen],
                                                             embed(qs), train_v),
                                   "distinct_2_train": same_size(train_q, len(qs))})
    for g in [*out["groups"], out["kept"], *out["recipes"]]:
        ref = g["distinct_2_train"]
        g["distinct_2_vs_train"] = round(g["distinct_2"] / ref, 4) if ref else None
    parents = {str(r["id"]): r["question"] for r in train}
    rewrites = [r for r in generated if r.get("source") == "rewrite" and str(r.get("parent_id")) in parents]
    if rewrites:
        cos = (embed([r["question"] for r in rewrites]) * embed([parents[str(r["parent_id"])] for r in rewrites])).sum(1)
        out["rewrites"] = [{"id": r["id"], "parent_id": str(r["parent_id"]),
                            "teacher": (r.get("teacher") or {}).get("model", ""), "kept": r["id"] in kept_ids,
                            "fidelity_cosine": round(float(c), 4)} for r, c in zip(rewrites, cos)]
        for g in out["groups"]:
            if g["strategy"] == "rewrite":
                mine = [x["fidelity_cosine"] for x in out["rewrites"]
                        if x["teacher"] == g["teacher"] and (g["stage"] == "generated" or x["kept"])]
                g["fidelity_cosine"] = round(statistics.fmean(mine), 4) if mine else None
        mine = [x["fidelity_cosine"] for x in out["rewrites"] if x["kept"]]
        out["kept"]["fidelity_cosine"] = round(statistics.fmean(mine), 4) if mine else None
    return out


COLUMNS = ("questions", "n", "distinct-1", "distinct-2", "train's distinct-2 at that n", "spread", "novelty",
           "words (mean, p90)", "answers", "rewrite ↔ parent cosine")
"""The profile's table (`table`): the page's (medaug.view) and bench/data_profile.py's."""


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def groups(prof: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, group) of every group of `prof`, in the order the table and the plot show them: the train split,
    each strategy and teacher (generated, then kept), every kept generated item together, each recipe's."""
    return ([("train split", prof["train"])]
            + [(f"{g['strategy']} · {g['teacher']} · {g['stage']}", g) for g in prof["groups"]]
            + [("all kept", prof["kept"])] + [(f"recipe {g['recipe']}", g) for g in prof.get("recipes", [])])


def table(prof: dict[str, Any]) -> list[tuple[str, ...]]:
    """A row of `COLUMNS` cells (text) per group (`groups`)."""
    return [(name, str(g["n"]), _num(g["distinct_1"]), _num(g["distinct_2"]), _num(g.get("distinct_2_train")),
             _num(g["spread"]), _num(g["novelty"]), f"{g['words']['mean']:.1f}, {g['words']['p90']}",
             " · ".join(f"{a} {v:.0%}" for a, v in g["answers"].items()), _num(g.get("fidelity_cosine")))
            for name, g in groups(prof)]


def plot(prof: dict[str, Any]) -> list[dict[str, Any]]:
    """plots/profile.json: a row per group (`groups`) with its n, novelty, spread, and distinct-2 as a share of
    the train split's at the same n (1.0: as varied; the train split's own is 1 by definition)."""
    return [{"group": name, "n": g["n"], "novelty": g["novelty"], "spread": g["spread"],
             "distinct_2_vs_train": 1.0 if g is prof["train"] else g["distinct_2_vs_train"]}
            for name, g in groups(prof)]

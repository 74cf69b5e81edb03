"""Accuracy and macro-F1 over the task's answers (yes/no/maybe, or option letters; same as sklearn's
f1_score(average="macro", zero_division=0)), and the progressive questions' scores per step and per chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medaug.data.schema import LABELS, Record


def compute_metrics(golds: list[str], preds: list[str], labels: Sequence[str] = LABELS) -> dict[str, Any]:
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    n = len(golds)
    per_class, f1s = {}, []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        n_gold = sum(g == label for g in golds)
        n_pred = sum(p == label for p in preds)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[label] = {"gold": n_gold, "predicted": n_pred, "correct": tp, "precision": precision,
                            "recall": recall, "f1": f1}
    correct = sum(g == p for g, p in zip(golds, preds))
    return {"accuracy": correct / n if n else 0.0, "macro_f1": sum(f1s) / len(f1s), "n": n, "per_class": per_class}


def chain_metrics(records: Sequence[Record], preds: Sequence[str]) -> dict[str, Any]:
    """Progressive questions, scored as ECN-QA does: accuracy at each step ({"1": .., "2": ..}, each step asked
    with the earlier steps and their correct answers) and the share of chains with every step right."""
    per_step: dict[int, list[bool]] = {}
    chains: dict[str, bool] = {}
    for r, q in zip(records, preds):
        if r.chain:
            right = r.final_decision == q
            per_step.setdefault(r.chain["step"], []).append(right)
            chains[r.chain["id"]] = chains.get(r.chain["id"], True) and right
    return {"n": len(chains), "all_right": sum(chains.values()) / len(chains) if chains else 0.0,
            "per_step": {str(k): sum(v) / len(v) for k, v in sorted(per_step.items())}}

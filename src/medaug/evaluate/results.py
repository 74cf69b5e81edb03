"""Writing a scored run's results (predictions, confusion rows, per-class rows, metrics): the evaluate stages and
the teacher baseline. No torch: the teacher baseline imports it without loading a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import Record
from medaug.evaluate.metrics import chain_metrics, compute_metrics
from medaug.evaluate.stats import bootstrap_ci
from medaug.params import Params
from medaug.paths import ScoredIO


def write_results(p: Params, records: list[Record], preds: list[str], io: ScoredIO, extra: dict[str, Any],
                  rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score `preds` (one label per test record; anything else, e.g. "unparsed", counts as wrong) and write, atomically:

    - io.out/predictions.jsonl: {id, gold, prediction, **rows[i]} per record (`rows`: extra fields per record,
      e.g. the scorer's logprobs or a teacher's reply; their id/gold/prediction keys are ignored);
    - io.out/predictions.json: PubMedQA's official format {pmid: label}, in test-split order (the key order of
      test_ground_truth.json when the split is the official one);
    - io.confusion: [{actual, predicted}] rows for DVC's confusion template;
    - io.per_class: [{class, precision, recall, f1}] rows for the per-class bar plot;
    - io.report: {accuracy, macro_f1, n, ci95 (unless evaluate.bootstrap is 0: {accuracy: {low, high},
      macro_f1: {low, high}, method}, evaluate.ci_method's interval), chains (progressive questions:
      `metrics.chain_metrics`), **extra, per_class}.

    Returns the metrics dict. Used by the evaluate/zero-shot stages (run) and the evaluate-teacher stage."""
    if len(preds) != len(records) or (rows is not None and len(rows) != len(records)):
        raise ValueError(f"{len(records)} records but {len(preds)} predictions"
                         + ("" if rows is None else f" and {len(rows)} rows"))
    golds = [r.final_decision for r in records]
    out_dir = Path(io.out)
    write_jsonl(out_dir / "predictions.jsonl",
                ({"id": r.id, "gold": g, "prediction": q,
                  **{k: v for k, v in (row or {}).items() if k not in ("id", "gold", "prediction")}}
                 for r, g, q, row in zip(records, golds, preds, rows or [None] * len(records))))
    write_json(out_dir / "predictions.json", {r.id: q for r, q in zip(records, preds)})
    write_json(io.confusion, [{"actual": g, "predicted": q} for g, q in zip(golds, preds)])
    scores = compute_metrics(golds, preds, p.task.choices)
    write_json(io.per_class, [{"class": label, **{k: s[k] for k in ("precision", "recall", "f1")}}
                                for label, s in scores["per_class"].items()])
    metrics: dict[str, Any] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n": scores["n"]}
    if p.evaluate.bootstrap:
        metrics["ci95"] = bootstrap_ci(golds, preds, p.evaluate.bootstrap, p.evaluate.seed, labels=p.task.choices,
                                       method=p.evaluate.ci_method)
    if any(r.chain for r in records):
        metrics["chains"] = chain_metrics(records, preds)
    metrics.update(extra)
    metrics["per_class"] = scores["per_class"]
    write_json(io.report, metrics)
    return metrics

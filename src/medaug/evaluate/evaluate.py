"""Evaluation stage: score a candidate (base model, or base + merged LoRA adapter) on the test split."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medaug.data.jsonl import iter_jsonl
from medaug.data.schema import Record, read_records
from medaug.errors import MedaugError
from medaug.evaluate.results import write_results
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.stats import mcnemar, paired_delta_ci
from medaug.models import TRAINED
from medaug.models.load import device, load_model_and_tokenizer
from medaug.params import Params, TaskParams, untraced
from medaug.paths import ZERO_SHOT, Candidate, EvaluateIO
from medaug.tracking import log_stage
from medaug.tracking.pyfunc import InvalidInput, task_records


def load_candidate(p: Params, model: str, adapter_dir: Path | None
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model of `model` (a short name), or the trained candidate in `adapter_dir` (its adapters merged
    into the weights, the continued-pretraining one first for dapt-* candidates), on the GPU when there is one."""
    if adapter_dir is not None and not (Path(adapter_dir) / TRAINED).exists():
        raise MedaugError(f"{adapter_dir}: no trained model here ({TRAINED} missing; run the train stage for "
                          f"{model} first)")
    lm, tokenizer = load_model_and_tokenizer(p.model_ref(model) if adapter_dir is None else str(adapter_dir))
    lm.to(device()).eval()
    return lm, tokenizer


def read_zero_shot(path: Path, records: list[Record], model: str) -> list[str]:
    """The zero-shot predictions of `model` (eval/<model>-zero-shot/predictions.jsonl), in test-split order."""
    fix = f"run `dvc repro zero-shot@{model}` (it scores the untrained base on the current test split)"
    if not Path(path).exists():
        raise MedaugError(f"{path}: not found; {fix}")
    ids, preds = [], []
    for lineno, row in iter_jsonl(path):
        if "id" not in row or "prediction" not in row:
            raise MedaugError(f"{path}:{lineno}: needs `id` and `prediction`; {fix}")
        ids.append(str(row["id"]))
        preds.append(row["prediction"])
    if ids != [r.id for r in records]:
        raise MedaugError(f"{path}: its {len(ids)} ids are not the {len(records)} test ids, in order; {fix}")
    return preds


def _accuracy(golds: list[str], preds: list[str]) -> float:
    return sum(g == q for g, q in zip(golds, preds)) / len(golds)  # as compute_metrics, for any answer set


def compare_zero_shot(records: list[Record], preds: list[str], zero_shot: list[str], n_resamples: int = 0,
                      seed: int = 0, method: str = "bca") -> dict[str, Any]:
    """{p_value, a_only, b_only, delta_accuracy, delta_ci95} of the candidate (a) against the zero-shot base (b):
    McNemar, and the paired bootstrap interval {low, high} of the difference in accuracy (stats.paired_delta_ci;
    none with n_resamples 0)."""
    golds = [r.final_decision for r in records]
    test = mcnemar(golds, preds, zero_shot)
    delta = _accuracy(golds, preds) - _accuracy(golds, zero_shot)
    out = {"p_value": test["p_value"], "a_only": test["a_only"], "b_only": test["b_only"], "delta_accuracy": delta}
    if n_resamples:
        out["delta_ci95"] = paired_delta_ci(golds, preds, zero_shot, n_resamples, seed, method=method)
    return out


def answer_examples(task: TaskParams, scorer: Scorer) -> list[dict[str, Any]]:
    """The task file's `examples`, each with the answer the candidate gives it: [{input, prediction}], exactly as
    the registered model answers that input (the same checks, records and scorer)."""
    try:
        records = task_records(task.examples, task)
    except InvalidInput as e:
        raise MedaugError(f"{task.file or 'the task file'}: examples: {e}") from None
    return [{"input": row, "prediction": r["prediction"]} for row, r in zip(task.examples, scorer.predict(records))]


def run(p: Params, c: Candidate, io: EvaluateIO, mlflow_root: Path | None = None) -> dict[str, Any]:
    """Score candidate `c` (variant `zero-shot`: the untrained base) on `io.test` with its adapter `io.adapter`;
    write its outputs (see write_results). A trained candidate with `io.zero_shot`
    (eval/<model>-zero-shot/predictions.jsonl) also gets `vs_zero_shot`: McNemar against the untrained base and
    the paired bootstrap interval of Δ accuracy (evaluate.bootstrap/seed/ci_method; none with bootstrap 0).
    With `mlflow_root`, one MLflow run (evaluate@<candidate>, or zero-shot@<model>, as train names its run) with
    the test split and the adapter as its dataset inputs."""
    model, variant, seed = c
    if variant != ZERO_SHOT and io.adapter is None:
        raise MedaugError(f"evaluate: variant {variant!r} needs its adapter directory (only zero-shot has none)")
    records = read_records(io.test, p.task.choices)
    if not records:
        raise MedaugError(f"{io.test}: no test records")
    compare = variant != ZERO_SHOT and io.zero_shot is not None
    zero_shot = read_zero_shot(io.zero_shot, records, model) if compare else None  # fail before scoring
    lm, tokenizer = load_candidate(p, model, None if variant == ZERO_SHOT else io.adapter)
    scorer = Scorer(lm, tokenizer, p.task, p.evaluate.batch_size)
    rows = scorer.predict(records)
    preds = [row["prediction"] for row in rows]
    extra: dict[str, Any] = {"model": model, "variant": variant, **({} if seed is None else {"seed": seed}),
                             "base": p.model_ref(model)}
    if p.task.examples:
        extra["examples"] = answer_examples(p.task, scorer)
    if zero_shot is not None:
        extra["vs_zero_shot"] = compare_zero_shot(records, preds, zero_shot, p.evaluate.bootstrap, p.evaluate.seed,
                                                  p.evaluate.ci_method)
    metrics = write_results(p, records, preds, io, extra, rows)
    if mlflow_root is not None:
        trained = variant != ZERO_SHOT
        with untraced():  # MLflow's copy of the params: no output of the stage
            logged = {"model": p.model_ref(model), "variant": variant, "seed": seed, "task": asdict(p.task),
                      "evaluate": asdict(p.evaluate)}
        log_stage(Path(mlflow_root), f"evaluate@{c.name}" if trained else f"zero-shot@{model}", logged, metrics,
                  inputs={"test": str(io.test), **({"model": str(io.adapter)} if trained else {})})
    return metrics

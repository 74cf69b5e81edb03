"""Stage `compare`: the papers' table. One row per trained recipe (a model and a variant, over train.seeds), read
as Dr.LLaMA's ablation table would be:

- the training set: items in all and generated items, and the teacher cost attributable to it
  (reports/dataset/<variant>.json, see data/variants.py);
- accuracy (mean over seeds, with the 95% percentile interval of that mean from a bootstrap over test items and
  seeds: evaluate.ci_method's BCa has no such two-level form, so it applies to single runs only) and
  macro-F1 (mean), each with its standard deviation over seeds and its per-seed values;
- against `original` of the same model: Δ accuracy of the means, its interval and two-sided p from the same
  two-level bootstrap (evaluate.stats.seed_bootstrap: with one seed each, the paired bootstrap over test items),
  and USD per accuracy point gained (teacher cost / (100 Δ), only when Δ > 0 and the set cost something);
- a round of a targeted recipe (issue 34, augment/rounds.py) also against the same round of its equal-budget
  random control (`control_of`): `vs_control`, the same test. A round's items and cost are the mean over seeds of
  its chains' (`training_set`), and plots/rounds.json draws accuracy against round and cost (`rounds_plot`).

Writes reports/variants.json (the table) and plots/variants.json (a row per recipe, drawn by the top-level
plots definitions: accuracy per recipe, and accuracy against generated items for size and fraction series).
Predictions come from eval/<candidate>/predictions.jsonl, so the numbers are recomputed, not copied.

`write_plots` writes the rows of the charts that span every candidate, since DVC draws one chart per file:
plots/candidates.json (accuracy and macro-F1 with their 95% CIs, the teacher baseline, the majority class) and
plots/curves/{train,dev}.json (every candidate's training and dev curves, so one chart overlays them).
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from medaug.data.jsonl import iter_jsonl, read_json, write_json
from medaug.data.schema import Record, read_records
from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.stats import seed_bootstrap, seed_bootstrap_ci
from medaug.params import Params
from medaug.paths import BASELINE, ZERO_SHOT, Candidate, CompareIO, candidate

log = logging.getLogger(__name__)


def read_predictions(path: Path, records: list[Record]) -> list[str]:
    """A candidate's label for each test record, in test order, from eval/<candidate>/predictions.jsonl."""
    if not path.exists():
        raise MedaugError(f"{path}: not found; run `dvc repro` (its evaluate stage scores the test split)")
    by_id = {str(row.get("id")): row.get("prediction") for _, row in iter_jsonl(path)}
    missing = [r.id for r in records if r.id not in by_id]
    if missing:
        raise MedaugError(f"{path}: no prediction for {len(missing)} test id(s), e.g. {missing[0]!r} (scored on "
                          f"another test split? re-run its evaluate stage)")
    return [str(by_id[r.id]) for r in records]


def _spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


def recipes(p: Params) -> list[tuple[str, str]]:
    """(model, variant) of every trained recipe, in params order (the dapt-<variant> ones after)."""
    return list(dict.fromkeys((m, v) for m, v, _ in p.candidates()))


def training_set(p: Params, model: str, variant: str, dataset_dir: Path, rounds_dir: Path | None) -> dict[str, Any]:
    """{items, generated, teacher_cost_usd} of a recipe's training set: its dataset report, or for a round
    (<recipe>-r<k>) the mean over seeds of each chain's round report, its generated items and cost cumulative
    over rounds 1..k (each seed's chain is its own: a student of its own, parents of its own)."""
    k = Candidate(model, variant).round
    if k is None:
        data = Candidate.recipe_of(variant)
        path = Path(dataset_dir) / f"{data}.json"
        if not path.exists():
            raise MedaugError(f"{path}: not found; run `dvc repro dataset@{data}`")
        return read_json(path)
    reports = []
    for s in p.train.seeds:
        path = Path(rounds_dir or "") / f"{candidate(model, variant, s)}.json"
        if not path.exists():
            stage = Candidate(model, variant, s).stage("teach")
            raise MedaugError(f"{path}: not found; run `dvc repro` (its stage {stage}; a stage dvc.yaml lacks: run "
                              f"`medaug rounds --write` first)")
        reports.append(read_json(path))
    return {"items": statistics.fmean(r["items"] for r in reports),
            "generated": statistics.fmean(r["generated_total"] for r in reports),
            "teacher_cost_usd": round(statistics.fmean(r["cost_usd_total"] for r in reports), 6),
            "round": k, "recipe": Candidate.recipe_of(variant)}


def control_of(p: Params, variant: str) -> str | None:
    """The equal-budget control of round variant <recipe>-r<k> whose recipe targets (pick errors or margin):
    round k of the first recipe in train.rounds that picks at random with the same strategies and per_round and
    has k rounds or more; None when there is none (or `variant` is no targeted round)."""
    k = Candidate("", variant).round
    recipe = p.variants.get(Candidate.recipe_of(variant))
    if k is None or recipe is None or recipe.pick == "random":
        return None
    for name in p.train.rounds:
        other = p.variants[name]
        if other.pick == "random" and other.strategies == recipe.strategies and \
                other.per_round == recipe.per_round and other.rounds >= k:
            return f"{name}-r{k}"
    return None


def rounds_plot(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of plots/rounds.json: per model and recipe with rounds, its accuracy (mean over seeds, CI) at each
    round against the round and the teacher cost so far; round 0 is the `original` recipe's row. A model without
    rounds has its round 0 alone (recipe <model>-original): the chart has a point to start from."""
    by = {(r["model"], r["variant"]): r for r in rows}
    chains = {(r["model"], r["recipe"]): None for r in rows if r.get("round") == 1}
    chains.update({(m, BASELINE): None for m, v in by if v == BASELINE and not any(c[0] == m for c in chains)})
    out = []
    for model, recipe in chains:
        chain = [by[model, BASELINE]] + [by[model, f"{recipe}-r{k}"] for k in range(1, len(rows) + 1)
                                         if (model, f"{recipe}-r{k}") in by]
        for k, row in enumerate(chain):
            out.append({"recipe": f"{model}-{recipe}", "candidate": f"{model}-{recipe}", "round": k,
                        "accuracy": row["accuracy"]["mean"], "accuracy_low": row["accuracy"]["ci95"]["low"],
                        "accuracy_high": row["accuracy"]["ci95"]["high"],
                        "teacher_cost_usd": row["teacher_cost_usd"] if k else 0.0, "generated": row["generated"]})
    return out


def table(p: Params, records: list[Record], eval_dir: Path, dataset_dir: Path,
          rounds_dir: Path | None = None) -> list[dict[str, Any]]:
    golds = [r.final_decision for r in records]
    n, seed = p.evaluate.bootstrap or 1000, p.evaluate.seed
    runs = {(m, v): [read_predictions(Path(eval_dir) / candidate(m, v, s) / "predictions.jsonl", records)
                     for s in p.train.seeds] for m, v in recipes(p)}
    rows = []
    for (model, variant), preds in runs.items():
        ds = training_set(p, model, variant, dataset_dir, rounds_dir)
        scores = [compute_metrics(golds, ps, p.task.choices) for ps in preds]
        row: dict[str, Any] = {
            "model": model, "variant": variant, "seeds": list(p.train.seeds), "items": ds["items"],
            "generated": ds["generated"], "teacher_cost_usd": ds.get("teacher_cost_usd", 0.0),
            **{key: ds[key] for key in ("recipe", "round") if key in ds},
            "accuracy": {**_spread([s["accuracy"] for s in scores]),
                         "ci95": seed_bootstrap_ci(golds, preds, n, seed)},
            "macro_f1": _spread([s["macro_f1"] for s in scores])}
        control = control_of(p, variant)
        if control is not None and (model, control) in runs:
            row["vs_control"] = {"variant": control, **seed_bootstrap(golds, preds, runs[model, control], n, seed)}
        base = runs.get((model, BASELINE))
        if base is not None and variant != BASELINE:
            vs = seed_bootstrap(golds, preds, base, n, seed)
            cost = row["teacher_cost_usd"]
            row["vs_original"] = {**vs, "usd_per_point": cost / (100 * vs["delta"])
                                  if vs["delta"] > 0 and cost > 0 else None}
        rows.append(row)
    return rows


def run(p: Params, io: CompareIO) -> list[dict[str, Any]]:
    """The table of recipes (see `table`) to io.out and its chart's rows to io.recipes_plot."""
    records = read_records(io.test, p.task.choices)
    rows = table(p, records, io.eval, io.datasets, io.rounds)
    write_json(io.out, {"n_test": len(records), "seeds": list(p.train.seeds), "baseline": BASELINE,
                          "bootstrap": p.evaluate.bootstrap or 1000, "recipes": rows})
    write_json(io.recipes_plot, [{"recipe": f"{r['model']}-{r['variant']}", "accuracy": r["accuracy"]["mean"],
                            "accuracy_low": r["accuracy"]["ci95"]["low"],
                            "accuracy_high": r["accuracy"]["ci95"]["high"], "macro_f1": r["macro_f1"]["mean"],
                            "generated": r["generated"], "teacher_cost_usd": r["teacher_cost_usd"]} for r in rows])
    if io.rounds_plot is not None:
        write_json(io.rounds_plot, rounds_plot(rows))
    for r in rows:
        vs = r.get("vs_original")
        log.info(f"compare: {r['model']}-{r['variant']}: accuracy {r['accuracy']['mean']:.3f} "
                 f"(sd {r['accuracy']['sd']:.3f}, {len(r['seeds'])} seed(s))"
                 + (f", Δ vs {BASELINE} {vs['delta']:+.3f} (p {vs['p_value']:.3f})" if vs else ""))
    return rows


def _read(path: Path) -> Any:
    if not Path(path).exists():
        raise MedaugError(f"{path}: not found; run `dvc repro` (the stage that writes it)")
    return read_json(path)


def _scores(name: str, role: str, path: Path) -> list[dict[str, Any]]:
    """A metrics file's accuracy and macro-F1 with their 95% CI, one row each (low, high: null when
    evaluate.bootstrap is 0, which writes no ci95)."""
    m = _read(path)
    if not isinstance(m, dict) or not {"accuracy", "macro_f1"} <= m.keys():
        raise MedaugError(f"{path}: expected a JSON object with accuracy and macro_f1; re-run `dvc repro` (the "
                          f"stage that writes it)")
    ci = m.get("ci95") or {}
    return [{"candidate": name, "role": role, "metric": key, "value": m[key],
             "low": ci.get(key, {}).get("low"), "high": ci.get(key, {}).get("high")}
            for key in ("accuracy", "macro_f1")]


def candidates_plot(p: Params, records: list[Record], metrics_dir: Path, teacher_metrics: Path,
                    teacher_report: Path) -> list[dict[str, Any]]:
    """Rows of plots/candidates.json, one per candidate and metric (value, 95% CI low and high) in the order the
    chart lists them: the zero-shot bases, the trained candidates in params order, the teacher baseline (named
    from its report, as `medaug report` names it); then the majority class, the score of always answering the
    test split's most frequent label (ties: the first of the task's choices), with no CI (low, high: null)."""
    named = ([(candidate(m, ZERO_SHOT), ZERO_SHOT) for m in p.train.models]
             + [(candidate(m, v, s), "trained") for m, v, s in p.candidates()])
    rows = [row for name, role in named for row in _scores(name, role, Path(metrics_dir) / f"{name}.json")]
    report = _read(teacher_report)
    rows += _scores(f"{report.get('variant', 'teacher')} ({report.get('model', '?')})", "teacher", teacher_metrics)
    golds = [r.final_decision for r in records]
    counts = Counter(golds)
    label = max(p.task.choices, key=lambda c: counts[c])
    majority = compute_metrics(golds, [label] * len(golds), p.task.choices)
    return rows + [{"candidate": f"majority class ({label})", "role": "majority", "metric": key,
                    "value": majority[key], "low": None, "high": None} for key in ("accuracy", "macro_f1")]


def curves_plot(p: Params, curves_dir: Path, pretrain: bool) -> list[dict[str, Any]]:
    """Every trained candidate's rows of `curves_dir`/<candidate>.json (plots/train or plots/dev) with its
    `candidate` and `recipe` (model-variant: the seeds of a recipe share a colour); with `pretrain`, the
    continued-pretraining curves after them (candidate and recipe pretrain-<model>)."""
    named = [(candidate(m, v, s), candidate(m, v)) for m, v, s in p.candidates()]
    if pretrain:
        named += [(f"pretrain-{m}", f"pretrain-{m}") for m in p.pretrain.models]
    return [{"candidate": name, "recipe": recipe, **row} for name, recipe in named
            for row in _read(Path(curves_dir) / f"{name}.json")]


def write_plots(p: Params, io: CompareIO) -> None:
    """plots/candidates.json and plots/curves/{train,dev}.json (see the module docstring)."""
    records = read_records(io.test, p.task.choices)
    write_json(io.candidates_plot, candidates_plot(p, records, io.scores, io.teacher_scores, io.teacher_report))
    write_json(Path(io.curves) / "train.json", curves_plot(p, io.train_curves, pretrain=True))
    write_json(Path(io.curves) / "dev.json", curves_plot(p, io.dev_curves, pretrain=False))

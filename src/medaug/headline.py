"""What DVC shows as metrics: the headline of each stage's report, small enough to read in `dvc exp show`.

Every stage writes its whole report to reports/ (a plain output, in git: per-class tables, funnel reasons, token
counts, the registry's answer) and, where a reviewer compares it across commits and experiments, its headline to
metrics/ (`dvc metrics diff`, `dvc exp show`):

- a candidate (metrics/eval/<candidate>.json) and the teacher baseline (metrics/teacher.json): accuracy, macro-F1,
  their 95% CI (unless evaluate.bootstrap is 0), and for a trained candidate the McNemar p against its zero-shot
  base (n, the test split's size, is in the report and on the stage's last line);
- the filter funnel (metrics/funnel.json): items in, items kept; each variant's training set
  (metrics/dataset/<variant>.json): its items; a round of a recipe with rounds (metrics/rounds/<candidate>.json):
  its parents, the student's error rate on train, items asked and kept, its training set, the chain's cost;
- the data profile (metrics/profile.json, the `view` stage): every kept generated item's novelty, distinct-2 as a
  share of the train split's at the same n, and the rewrites' mean cosine with their parents;
- what the teacher was asked (generate, filter, the teacher baseline): requests, failures, and what the answers
  cost, `data_cost_usd`: paid in this run or earlier (cache hits), so a rerun on a warm cache reads the same.

Nothing here changes when nothing it summarises changed: no run id, no wall time, no cache state.
"""

from __future__ import annotations

from typing import Any


def teacher_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """{requests, failed, data_cost_usd} of a report's teacher usage (llm.teacher.Usage.as_dict)."""
    u = usage or {}
    return {"requests": u.get("requests", 0), "failed": u.get("failed", 0),
            "data_cost_usd": round(u.get("cost_usd", 0.0) + u.get("cost_usd_saved", 0.0), 6)}


def scores(report: dict[str, Any]) -> dict[str, Any]:
    """A scored candidate's (evaluate.run) or the teacher baseline's headline."""
    out = {k: report[k] for k in ("accuracy", "macro_f1")}
    if report.get("ci95"):  # none when evaluate.bootstrap is 0; its method is a param (evaluate.ci_method)
        out["ci95"] = {k: v for k, v in report["ci95"].items() if k != "method"}
    if report.get("vs_zero_shot"):
        out["p_vs_zero_shot"] = report["vs_zero_shot"]["p_value"]
    if "usage" in report:
        out["teacher"] = teacher_usage(report["usage"])
    return out


def line(report: dict[str, Any]) -> str:
    """`scores` as the last line of a scoring stage: accuracy and macro-F1, with their 95% intervals."""
    ci = report.get("ci95") or {}
    return ", ".join(f"{name} {report[k]:.3f}" + (f" [{ci[k]['low']:.3f}, {ci[k]['high']:.3f}]" if k in ci else "")
                     for k, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))) + f" (n {report['n']})"


def funnel(report: dict[str, Any]) -> dict[str, Any]:
    """The filter stage's headline: items in and kept, and the judge/consistency requests when it asked any."""
    out = {"in": report["in"], "kept": report["kept"]}
    if (report.get("teacher") or {}).get("requests"):
        out["teacher"] = teacher_usage(report["teacher"])
    return out


def dataset(report: dict[str, Any]) -> dict[str, Any]:
    """A variant's training set (data.variants): how many items it trains on."""
    return {"items": report["items"]}


def generate(report: dict[str, Any]) -> dict[str, Any]:
    """The generate stage's headline: what it asked the teacher."""
    return {"teacher": teacher_usage(report.get("teacher"))}


def teach(report: dict[str, Any]) -> dict[str, Any]:
    """A round's headline (augment/rounds.py `teach`): what it asked and kept, from how many parents, what the
    student before it got wrong on train, and the teacher cost of the chain so far."""
    return {**{key: report[key] for key in ("asked", "kept", "items", "cost_usd_total")},
            "parents": report["parents"]["n"], "student_error_rate": report["student_on_train"]["error_rate"]}


def profile(report: dict[str, Any]) -> dict[str, Any]:
    """The data profile's headline (medaug.data.profile): of every kept generated item, its novelty, distinct-2
    against the train split's at the same n, and the rewrites' cosine with their parents (those it has)."""
    kept = report["kept"]
    return {k: kept[k] for k in ("novelty", "distinct_2_vs_train", "fidelity_cosine") if kept.get(k) is not None}

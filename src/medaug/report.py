"""`medaug report`: one Markdown table of every evaluated candidate, ready for a pull-request comment.

Rows: metrics/eval/*.json (trained candidates and zero-shot baselines), then metrics/teacher.json when it exists
(named from reports/teacher.json); p-values: McNemar against the zero-shot base (the candidate's metrics) and
against the champion the register stage compared with (reports/register.json).
Deltas come from `dvc metrics diff --json --all <rev>`; when that fails, their cells are "–" and a note says why.
Then the recipes view (reports/variants.json from the `compare` stage): per model and variant, mean over seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from medaug.data.jsonl import read_json
from medaug.errors import MedaugError
from medaug.paths import METRICS, REPORTS

DASH = "–"


def metrics_diff(root: Path, rev: str) -> tuple[dict[str, Any], str | None]:
    """({metrics file: {key: {old, new, diff}}}, None), or ({}, why it is not available)."""
    cmd = [sys.executable, "-m", "dvc", "metrics", "diff", "--json", "--all", rev]
    what = f"`dvc metrics diff {rev}`"
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {}, f"{what} could not run ({e})"
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        return {}, f"{what} failed: {lines[0].removeprefix('ERROR: ') if lines else f'exit {done.returncode}'}"
    try:
        diff = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        return {}, f"{what} printed no JSON"
    diff = diff.get("diff", diff) if isinstance(diff, dict) else {}
    return (diff, None) if diff else ({}, f"{what}: no metrics to compare")


def _ci(m: dict[str, Any], key: str) -> str:
    if key not in m:
        return DASH
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")


def _p(p: float | None) -> str:
    return DASH if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _delta(diff: dict[str, Any], path: str, key: str) -> str:
    d = diff.get(path, {}).get(key)
    if not d:
        return DASH
    if d.get("old") is None:
        return "new"
    return f"{d['diff']:+.3f}" if isinstance(d.get("diff"), (int, float)) else DASH


def render(root: Path, rev: str = "HEAD") -> str:
    """The Markdown report of the metrics under `root` (the project root), deltas against git revision `rev`."""
    root = Path(root)
    rows = [(f.stem, f) for f in sorted((root / METRICS / "eval").glob("*.json"))]
    teacher = root / METRICS / "teacher.json"
    if teacher.exists():
        t = read_json(root / REPORTS / "teacher.json") if (root / REPORTS / "teacher.json").exists() else {}
        rows.append((f"{t.get('variant', 'teacher')} ({t.get('model', '?')})", teacher))
    if not rows:
        raise MedaugError(f"{root / METRICS / 'eval'}: no metrics files; run `dvc repro` first")
    reg_path = root / REPORTS / "register.json"
    reg = read_json(reg_path) if reg_path.exists() else None
    diff, why = metrics_diff(root, rev)
    vs_champion = {name: c.get("p_vs_champion") for name, c in ((reg or {}).get("candidates") or {}).items()}
    lines = [f"| candidate | accuracy [95% CI] | macro-F1 [95% CI] | p vs zero-shot | p vs champion "
             f"| Δ accuracy vs {rev} | Δ macro-F1 vs {rev} |", "|---|---|---|---|---|---|---|"]
    for name, path in rows:
        m, rel = read_json(path), path.relative_to(root).as_posix()
        if not isinstance(m, dict):
            raise MedaugError(f"{path}: expected a JSON object of metrics; re-run the stage that writes it")
        p_champion = _p(vs_champion.get(name))
        if reg and reg.get("candidate") == name:
            name = f"**{name}** (v{reg.get('version')} @{reg.get('alias')})"
        lines.append(f"| {name} | {_ci(m, 'accuracy')} | {_ci(m, 'macro_f1')} | "
                     f"{_p(m.get('p_vs_zero_shot'))} | {p_champion} "
                     f"| {_delta(diff, rel, 'accuracy')} | {_delta(diff, rel, 'macro_f1')} |")
    if reg:
        vs, value = reg.get("vs_champion"), reg.get("value")
        lines.append(f"\nRegistered `{reg.get('model_name')}` v{reg.get('version')} = {reg.get('candidate')} as "
                     f"**@{reg.get('alias')}** ({reg.get('metric')} "
                     + (f"{value:.3f}" if isinstance(value, (int, float)) else DASH) + f", policy {reg.get('policy')}"
                     + (f"; McNemar p vs the previous champion {vs['p_value']:.3f}" if vs else "") + ").")
    if why:
        lines.append(f"\nΔ columns unavailable: {why.rstrip('.')}.")
    variants = root / REPORTS / "variants.json"
    if variants.exists():
        table = read_json(variants)
        lines += ["", *recipes_table(table)]
        if rounds := rounds_table(table):
            lines += ["", *rounds]
    if detail := rounds_detail(root):
        lines += ["", *detail]
    return "\n".join(lines) + "\n"


def _sd(x: dict[str, Any], seeds: int) -> str:
    return f"{x['mean']:.3f}" + (f" ± {x['sd']:.3f}" if seeds > 1 else "")


def rounds_detail(root: Path) -> list[str]:
    """Per round candidate (reports/dataset/<round candidate>.json): the student before and its error rate on the train split, the
    parents picked (how many it got wrong, their mean margin), items asked and kept, what the filter dropped, the
    round's cost and the chain's, then the dev accuracy of the round's student (reports/train) and its test accuracy
    with its CI (metrics/eval)."""
    rounds = [r for r in (read_json(f) for f in sorted((root / REPORTS / "dataset").glob("*.json")))
              if isinstance(r, dict) and "round" in r and "candidate" in r]
    if not rounds:
        return []
    lines = ["### Rounds, one row per chain and round (reports/dataset/<candidate>.json)", "",
             "| candidate | student before: wrong on train | parents (wrong, mean margin) | asked | kept | dropped "
             "| USD round (chain) | dev accuracy | test accuracy [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        name = r["candidate"]
        train = root / REPORTS / "train" / f"{name}.json"
        dev = read_json(train).get("dev_accuracy") if train.exists() else None
        test = root / METRICS / "eval" / f"{name}.json"
        dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none"
        lines.append(f"| {name} | {r['student']}: {r['student_on_train']['error_rate']:.3f} | {r['parents']['n']} "
                     f"({r['parents']['wrong']}, {r['parents']['mean_margin']:+.2f}) | {r['asked']} | {r['kept']} | "
                     f"{dropped} | {r['cost_usd']:.4f} ({r['cost_usd_total']:.4f}) | "
                     f"{DASH if dev is None else f'{dev:.3f}'} | "
                     f"{_ci(read_json(test), 'accuracy') if test.exists() else DASH} |")
    return lines


def rounds_table(table: dict[str, Any]) -> list[str]:
    """The rounds view of reports/variants.json: each round of a targeted recipe against its random control."""
    rows = [r for r in table.get("recipes", []) if r.get("vs_control")]
    if not rows:
        return []
    lines = ["### Targeted rounds against their equal-budget random control (same test: bootstrap over test items "
             "and seeds)", "", "| round | accuracy | control | its accuracy | Δ [95% CI] | p |",
             "|---|---|---|---|---|---|"]
    by = {(r["model"], r["variant"]): r for r in table["recipes"]}
    for r in rows:
        vs, control = r["vs_control"], by.get((r["model"], r["vs_control"]["variant"]))
        lines.append(f"| {r['model']}-{r['variant']} | {r['accuracy']['mean']:.3f} | {r['model']}-{vs['variant']} | "
                     f"{control['accuracy']['mean']:.3f} | {vs['delta']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}] | "
                     f"{_p(vs['p_value'])} |" if control else "")
    return lines


def recipes_table(table: dict[str, Any]) -> list[str]:
    """The recipes view (reports/variants.json, written by the `compare` stage): Dr.LLaMA's table."""
    seeds, base = len(table.get("seeds") or [0]), table.get("baseline", "original")
    mean = "mean ± sd over " + (f"{seeds} seeds" if seeds > 1 else "1 seed")
    lines = [f"### Recipes ({mean}; Δ and p vs `{base}`: bootstrap over the {table.get('n_test')} test items and "
             f"the seeds)", "",
             "| recipe | items (generated) | accuracy [95% CI] | macro-F1 | Δ accuracy [95% CI] | p "
             "| teacher USD | USD per point |", "|---|---|---|---|---|---|---|---|"]
    for r in table.get("recipes", []):
        acc, vs = r["accuracy"], r.get("vs_original")
        ci = acc.get("ci95") or {}
        delta = f"{vs['delta']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]" if vs else DASH
        usd = vs.get("usd_per_point") if vs else None
        lines.append(f"| {r['model']}-{r['variant']} | {r['items']:g} ({r['generated']:g}) | {_sd(acc, seeds)}"
                     + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
                     + f" | {_sd(r['macro_f1'], seeds)} | {delta} | {_p(vs['p_value']) if vs else DASH} "
                     f"| {r['teacher_cost_usd']:.4f} | {DASH if usd is None else f'{usd:.4f}'} |")
    return lines

"""Benchmark: LoRA on Gemma-3-270M (CPU) trained on the real PubMedQA PQA-L fold 0, scored on the official 500
test questions, against the untrained base (zero-shot) and the majority class.

Clones the committed project into a temp dir, points `data.source` at ../shared/data/pubmedqa/ori_pqal.json,
trains only the `original` variant (the real train split; generation on 450 items with a local teacher would
take hours), runs `dvc repro prepare train@gemma270m-original-0 evaluate@gemma270m-original-0 zero-shot@gemma270m`
and appends the scores, the dev curve's best checkpoint and the wall times to bench/RESULTS.md. Targets (issue
5): the trained candidate beats zero-shot and the majority-class accuracy on the test split.

Usage: `python bench/pqal_lora.py [--set train.epochs=3 ...]` (about 40 minutes on 2 cores), or
`python bench/pqal_lora.py --report PROJECT_DIR --wall-s SECONDS` to write the section for a run made by hand
with the same stages.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from roofline import machine
from run import timed_repro  # bench/run.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
PQAL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
TARGETS = ["prepare", "train@gemma270m-original-0", "evaluate@gemma270m-original-0", "zero-shot@gemma270m"]
DEFAULT_SETS = [f"data.source={PQAL}", "train.variants=[original]", "train.eval_steps=38"]


def set_params(repo: Path, sets: list[str]) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments stay
    params = yaml.load((repo / "params.yaml").read_text())
    for item in sets:
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = YAML(typ="safe").load(value)
    with open(repo / "params.yaml", "w") as f:
        yaml.dump(params, f)


def run(repo: Path) -> tuple[dict[str, float], float]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(repo / "src"))
    return timed_repro(repo, env, TARGETS)


def report(repo: Path, times: dict[str, float], wall: float, sets: list[str]) -> str:
    test = [json.loads(line) for line in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    counts = collections.Counter(r["final_decision"] for r in test)
    label, n_major = counts.most_common(1)[0]
    majority = n_major / len(test)
    ev = {name: json.loads((repo / f"reports/eval/{name}.json").read_text())
          for name in ("gemma270m-original-0", "gemma270m-zero-shot")}
    tr = json.loads((repo / "reports/train/gemma270m-original-0.json").read_text())
    dev = json.loads((repo / "plots/dev/gemma270m-original-0.json").read_text())
    trained, zero = ev["gemma270m-original-0"], ev["gemma270m-zero-shot"]
    rows = "\n".join(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                     + " / ".join(f"{m['per_class'][c]['predicted']}" for c in ("yes", "no", "maybe")) + " |"
                     for name, m in ev.items())
    dev_rows = ", ".join(f"{r['step']}: {r['dev_accuracy']:.2f}" for r in dev)
    stage_rows = "\n".join(f"| {name} | {secs:.0f} |" for name, secs in times.items())
    checks = [("beats zero-shot accuracy", trained["accuracy"] > zero["accuracy"]),
              (f"beats the majority class ({label}: {majority:.3f})", trained["accuracy"] > majority)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    return (f"\n## Real PQA-L fold 0: LoRA on Gemma-3-270M, CPU, {dt.date.today()} (commit {commit}, "
            f"{machine()})\n\n"
            f"`bench/pqal_lora.py`: params.yaml as committed with {', '.join(f'`{s}`' for s in sets)}; "
            f"{tr['n_train']} train / {tr['n_dev']} dev / {len(test)} official test questions "
            f"(yes {counts['yes']}, no {counts['no']}, maybe {counts['maybe']}).\n\n"
            f"| candidate | accuracy | macro-F1 | predicted yes / no / maybe |\n|---|---|---|---|\n{rows}\n"
            f"| majority class ({label}) | {majority:.3f} | | |\n\n"
            f"Training: {tr['steps']} steps (dev scored every "
            f"{'epoch' if 'train.eval_steps=0' in sets else 'few'} steps, step: dev accuracy = {dev_rows}); "
            f"the best checkpoint, step {tr['best_step']} (dev accuracy {tr['dev_accuracy']:.2f}), is the "
            f"adapter scored here.\n\n"
            f"| stage | seconds |\n|---|---|\n{stage_rows}\n| **total** | **{wall:.0f}** |\n\n"
            + "\n".join(f"- {name}: **{'PASS' if ok else 'FAIL'}**" for name, ok in checks) + "\n")


def train_runtime(repo: Path, stage: str) -> float:
    """The wall time of the training loop of `stage`'s latest run, from the project's MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medaug")
    runs = client.search_runs([exp.experiment_id], f"tags.`medaug.stage` = '{stage}'",
                              order_by=["attributes.start_time DESC"], max_results=1) if exp else []
    if not runs or "train_runtime_s" not in runs[0].data.metrics:
        sys.exit(f"{repo / 'mlflow.db'}: no MLflow run of {stage} with train_runtime_s")
    return runs[0].data.metrics["train_runtime_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=[], help="a params.yaml override, key=value (repeatable)")
    ap.add_argument("--report", type=Path, help="write the section for an existing run in this project dir")
    ap.add_argument("--wall-s", type=float, default=0.0, help="with --report: the run's wall time")
    args = ap.parse_args()
    if not PQAL.exists():
        sys.exit(f"{PQAL}: not found (PubMedQA PQA-L is expected in ../shared/data/pubmedqa/)")
    sets = DEFAULT_SETS + args.set
    if args.report:  # a run made by hand: only the training loop's own time is on record (MLflow), and the total
        times = {"train@gemma270m-original-0 (training loop)": train_runtime(args.report, "train@gemma270m-original-0")}
        text = report(args.report, times, args.wall_s, sets)
    else:
        with tempfile.TemporaryDirectory(prefix="medaug-pqal-") as tmp:
            repo = Path(tmp) / "project"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
            set_params(repo, sets)
            times, wall = run(repo)
            text = report(repo, times, wall, sets)
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(text)
    print(text)
    if "FAIL" in text:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Benchmark: the recipes ablation on the real PubMedQA PQA-L fold 0 (issue 14), scored on the 500 official test
questions: Gemma-3-270M with LoRA on CPU (or a GPU when there is one), each recipe trained once per seed, the
table from the `compare` stage (mean over seeds, Δ vs `original` with a bootstrap over test items and seeds).

Clones the committed project into WORKDIR (kept, so a rerun with the same arguments resumes: DVC skips every
stage already done), points `data.source` at ../shared/data/pubmedqa/ori_pqal.json, sets `train.variants` and
`train.seeds`, runs `dvc repro compare` and appends the table, the per-seed accuracies and the stage wall times
to bench/RESULTS.md.

    python bench/ablation.py --variants original why augmented --seeds 0 1 2   # issue 14's table
    python bench/ablation.py --variants original why --seeds 0 --workdir /tmp/abl  # one seed: ~2 x 35 min on 2 cores
    python bench/ablation.py --variants original --rounds targeted targeted-random --seeds 0 1 2  # issue 34

A recipe other than `original` needs generated data only if it lists strategies (`augmented`: the local Gemma
teacher, generate.per_strategy items per strategy); `why` is the train split with explanations as a second target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from pqal_lora import PQAL, set_params  # bench/ (this script's folder is on sys.path)
from roofline import machine
from run import timed_repro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def section(repo: Path, times: dict[str, float], wall: float, sets: list[str]) -> str:
    from medaug.report import recipes_table, rounds_table

    table = json.loads((repo / "reports/variants.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    per_seed = "\n".join(f"- {r['model']}-{r['variant']}: accuracy per seed "
                         + ", ".join(f"{s}: {a:.3f}" for s, a in zip(r["seeds"], r["accuracy"]["per_seed"]))
                         for r in table["recipes"])
    stage_rows = "\n".join(f"| {name} | {secs:.0f} |" for name, secs in times.items())
    return (f"\n## Recipes ablation, real PQA-L fold 0, Gemma-3-270M LoRA, {dt.date.today()} (commit {commit}, "
            f"{machine()})\n\n"
            f"`bench/ablation.py`: params.yaml as committed with {', '.join(f'`{s}`' for s in sets)}.\n\n"
            + "\n".join(recipes_table(table)) + "\n\n" + "\n".join(rounds_table(table)) + f"\n\n{per_seed}\n\n"
            f"| stage | seconds |\n|---|---|\n{stage_rows}\n| **total** | **{wall:.0f}** |\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["original", "why", "augmented"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rounds", nargs="*", default=[], help="recipes with rounds to run (train.rounds), e.g. "
                    "targeted targeted-random: their round stages are written with `medaug rounds --write`")
    ap.add_argument("--set", action="append", default=[], help="another params.yaml override, key=value")
    ap.add_argument("--targets", nargs="+", default=["compare"], help="the stages to reproduce (default: compare, "
                    "which runs everything the table needs); without compare, only the stage times are printed")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/medaug-ablation"))
    args = ap.parse_args()
    if not PQAL.exists():
        sys.exit(f"{PQAL}: not found (PubMedQA PQA-L is expected in ../shared/data/pubmedqa/)")
    if "original" not in args.variants:
        sys.exit("--variants: list `original`, the row every other recipe is compared with")
    sets = [f"data.source={PQAL}", f"train.variants={json.dumps(args.variants)}",
            f"train.seeds={json.dumps(args.seeds)}", f"train.rounds={json.dumps(args.rounds)}",
            "train.eval_steps=38", *args.set]
    repo = args.workdir / "project"
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    set_params(repo, sets)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(repo / "src"))
    subprocess.run([sys.executable, "-m", "medaug.cli", "rounds", "--write"], cwd=repo, env=env, check=True)
    times, wall = timed_repro(repo, env, args.targets)
    if "compare" not in args.targets:
        print("\n".join(f"| {name} | {secs:.0f} |" for name, secs in times.items()) + f"\n| total | {wall:.0f} |")
        return
    text = section(repo, times, wall, sets)
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

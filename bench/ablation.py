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

A run too long for one sitting goes in parts, a seed (or a few candidates) at a time, on whatever machine: `--keep
NAME` copies what `compare` reads of every candidate scored so far (its test predictions, its training set's
report, the test golds) and the part's stage times into bench/results/NAME/, which is committed; `--combine NAME`
then computes the table over the seeds every candidate has there, with the same code as the `compare` stage, and
appends it with each part's machine, commit and stage times:

    python bench/ablation.py --variants original --rounds targeted targeted-random --seeds 0 --keep rounds-pqal \
        --targets evaluate@gemma270m-original-0 evaluate-r1@gemma270m-targeted-0 ...   # a part: seed 0
    python bench/ablation.py --variants original --rounds targeted targeted-random --combine rounds-pqal
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pqal_lora import PQAL, set_params  # bench/ (this script's folder is on sys.path)
from roofline import machine
from run import timed_repro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results"  # the parts of runs made in parts (--keep), committed


def rows(path: Path) -> list[dict]:
    """A JSONL file's rows (medaug's reader: lines end at \\n only, never at the U+2028 abstracts hold)."""
    from medaug.data.jsonl import iter_jsonl

    return [row for _, row in iter_jsonl(path)]


def keep(repo: Path, dest: Path, times: dict[str, float], wall: float, sets: list[str]) -> list[str]:
    """Copy into `dest` what the compare stage reads of each candidate `repo` has scored (eval/<c>/predictions.jsonl
    as id and prediction, reports/dataset/*.json: each recipe's and each round's training-set report), the test
    golds, and this part's record (machine, commit, params set, stage times) in parts.jsonl; the candidates kept."""
    for sub in ("eval", "dataset"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    golds = [{"id": r["id"], "final_decision": r["final_decision"]}
             for r in rows(repo / "data/prepared/test.jsonl")]
    if (dest / "golds.jsonl").exists() and \
            rows(dest / "golds.jsonl") != golds:
        sys.exit(f"{dest}/golds.jsonl: another test split than {repo}'s; keep this run under another name")
    (dest / "golds.jsonl").write_text("".join(json.dumps(g) + "\n" for g in golds))
    kept = []
    for path in sorted((repo / "eval").glob("*/predictions.jsonl")):
        (dest / "eval" / path.parent.name).mkdir(exist_ok=True)
        (dest / "eval" / path.parent.name / "predictions.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "prediction": r["prediction"]}) + "\n" for r in rows(path)))
        kept.append(path.parent.name)
    for path in (repo / "reports/dataset").glob("*.json"):
        shutil.copyfile(path, dest / "dataset" / path.name)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    with open(dest / "parts.jsonl", "a") as f:
        f.write(json.dumps({"date": str(dt.date.today()), "commit": commit, "machine": machine(), "set": sets,
                            "candidates": kept, "stage_seconds": {k: round(v) for k, v in times.items()},
                            "wall_seconds": round(wall)}) + "\n")
    return kept


def combine(dest: Path, sets: list[str]) -> str:
    """The table of bench/results/<name>/ (see `keep`) over the seeds every candidate has, with each part's
    machine, commit and stage times."""
    from medaug.data.schema import Record
    from medaug.evaluate import compare
    from medaug.params import parse_params, read_yaml
    from medaug.report import recipes_table, rounds_table

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(ROOT / "params.yaml", Path(tmp) / "params.yaml")
        set_params(Path(tmp), [x for x in sets if not x.startswith("train.seeds=")])
        p = parse_params(read_yaml(Path(tmp) / "params.yaml"), ROOT)  # task files etc. from the project
    scored = {d.name for d in (dest / "eval").iterdir()}
    seeds = [s for s in range(100) if all(f"{m}-{v}-{s}" in scored for m, v in compare.recipes(p))]
    if not seeds:
        sys.exit(f"{dest}: no seed has every candidate of {compare.recipes(p)} scored; run the missing parts")
    p.train.seeds = seeds
    records = [Record(g["id"], "", [], g["final_decision"]) for g in rows(dest / "golds.jsonl")]
    recipes = compare.table(p, records, dest / "eval", dest / "dataset", dest / "dataset")
    table = {"n_test": len(records), "seeds": seeds, "baseline": "original", "bootstrap": p.evaluate.bootstrap or 1000,
             "recipes": recipes}
    per_seed = "\n".join(f"- {r['model']}-{r['variant']}: accuracy per seed "
                         + ", ".join(f"{s}: {a:.3f}" for s, a in zip(r["seeds"], r["accuracy"]["per_seed"]))
                         for r in recipes)
    parts = rows(dest / "parts.jsonl")
    part_lines = "\n".join(
        f"- {x['date']}, commit {x['commit']}, {x['machine']}: {', '.join(x['candidates'])} scored so far; "
        f"{x['wall_seconds']} s: " + ", ".join(f"{k} {v} s" for k, v in x["stage_seconds"].items()) for x in parts)
    return (f"\n## Recipes ablation in parts, real PQA-L fold 0, Gemma-3-270M LoRA, {dt.date.today()} "
            f"(bench/results/{dest.name}, seeds {', '.join(map(str, seeds))})\n\n"
            f"`bench/ablation.py --combine {dest.name}`: params.yaml as committed with "
            f"{', '.join(f'`{s}`' for s in sets)}; each part's predictions kept with `--keep`.\n\n"
            + "\n".join(recipes_table(table)) + "\n\n" + "\n".join(rounds_table(table)) + f"\n\n{per_seed}\n\n"
            f"The parts (each part's stage times are the stages it ran):\n\n{part_lines}\n")


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
    ap.add_argument("--keep", metavar="NAME", help="after the run, copy every scored candidate's predictions and "
                    "training-set report, and this part's stage times, into bench/results/NAME/ (a run in parts)")
    ap.add_argument("--combine", metavar="NAME", help="run nothing: the table of bench/results/NAME/ over the seeds "
                    "every candidate has, appended to bench/RESULTS.md")
    args = ap.parse_args()
    if "original" not in args.variants:
        sys.exit("--variants: list `original`, the row every other recipe is compared with")
    sets = [f"data.source={PQAL}", f"train.variants={json.dumps(args.variants)}",
            f"train.seeds={json.dumps(args.seeds)}", f"train.rounds={json.dumps(args.rounds)}",
            "train.eval_steps=38", *args.set]
    if args.combine:
        text = combine(RESULTS / args.combine, sets)
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(text)
        print(text)
        return
    if not PQAL.exists():
        sys.exit(f"{PQAL}: not found (PubMedQA PQA-L is expected in ../shared/data/pubmedqa/)")
    repo = args.workdir / "project"
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    set_params(repo, sets)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(repo / "src"))
    subprocess.run([sys.executable, "-m", "medaug.cli", "rounds", "--write"], cwd=repo, env=env, check=True)
    times, wall = timed_repro(repo, env, args.targets)
    if args.keep:
        kept = keep(repo, RESULTS / args.keep, times, wall, sets)
        print(f"kept {len(kept)} scored candidate(s) in {RESULTS / args.keep}: {', '.join(kept)}")
    if "compare" not in args.targets:
        print("\n".join(f"| {name} | {secs:.0f} |" for name, secs in times.items()) + f"\n| total | {wall:.0f} |")
        return
    text = section(repo, times, wall, sets)
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

"""The data profile (medaug.data.profile, issue 35) of one or more built projects, as Markdown appended to
bench/RESULTS.md: per strategy and teacher, generated and kept, beside the train split, and the generated items of
each training set (data/train/<recipe>.jsonl, and a round's data/rounds/<candidate>/train.jsonl: every round so
far).

    python bench/data_profile.py . /tmp/medaug-ablation/project   # the default run and the PQA-L ablation's work folder

Each project needs its prepare, generate and filter outputs (`dvc repro filter`); nothing is written into it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from roofline import machine  # bench/ (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def table(project: Path) -> str:
    from medaug.data.profile import COLUMNS, table
    from medaug.view import data_profile, workspace

    sets = {p.stem: p.relative_to(project) for p in sorted((project / "data" / "train").glob("*.jsonl"))}
    sets |= {p.parent.name: p.relative_to(project) for p in sorted((project / "data" / "rounds").glob("*/train.jsonl"))}
    rows = [COLUMNS, ("---",) * len(COLUMNS), *table(data_profile(workspace(project), sets))]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main() -> None:
    projects = [Path(p).resolve() for p in sys.argv[1:]] or [ROOT]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    text = f"\n## Data profile, {dt.date.today()} (commit {commit}, {machine()})\n\n" \
           "`bench/data_profile.py`: medaug.data.profile of each project's generate and filter outputs. novelty: 1 - the " \
           "MiniLM cosine to the nearest train question (the train split's: to the nearest other one); spread: " \
           "mean pairwise cosine distance; distinct-n falls as a set grows, so the train split's distinct-2 at the " \
           "same n is the reference.\n"
    for project in projects:
        source = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'src'); from medaug.params "
                                 "import load_params; print(load_params().data.source)"], cwd=project,
                                capture_output=True, text=True).stdout.strip()
        text += f"\n### {project if project != ROOT else 'the default run'} (data.source: `{source}`)\n\n" \
                f"{table(project)}\n"
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

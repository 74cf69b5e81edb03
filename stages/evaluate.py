"""DVC stages `evaluate@<model>-<variant>-<seed>`, `evaluate-dapt@...` and `zero-shot@<model>` (no seed): score the
test split, write metrics."""

import sys
from pathlib import Path

from medaug import headline
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.evaluate import evaluate
from medaug.params import load_params
from medaug.paths import CONFUSION, EVAL, METRICS, MODELS, PER_CLASS, PREPARED, REPORTS, candidate


def main(model: str, variant: str, seed: str | None = None) -> None:
    p = load_params()
    s = None if seed is None else int(seed)
    name = candidate(model, variant, s)
    trained = variant != "zero-shot"
    report = evaluate.run(p, model, variant, s, PREPARED / "test.jsonl", MODELS / name if trained else None,
                          EVAL / name, REPORTS / "eval" / f"{name}.json", CONFUSION / f"{name}.json",
                          PER_CLASS / f"{name}.json",
                          EVAL / candidate(model, "zero-shot") / "predictions.jsonl" if trained else None,
                          mlflow_root=Path.cwd())
    write_json(METRICS / "eval" / f"{name}.json", headline.scores(report))


if __name__ == "__main__":
    guarded(main, *sys.argv[1:4])

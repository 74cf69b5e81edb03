"""DVC stages `evaluate@<model>-<variant>` and `zero-shot@<model>`: score the test split, write metrics."""

import sys

from medaug import evaluate
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import CONFUSION, EVAL, METRICS, MODELS, PER_CLASS, PREPARED, candidate


def main(model: str, variant: str) -> None:
    p = load_params()
    name = candidate(model, variant)
    trained = variant != "zero-shot"
    evaluate.run(p, model, variant, PREPARED / "test.jsonl", MODELS / name if trained else None, EVAL / name,
                 METRICS / "eval" / f"{name}.json", CONFUSION / f"{name}.json", PER_CLASS / f"{name}.json",
                 EVAL / candidate(model, "zero-shot") / "predictions.jsonl" if trained else None)


if __name__ == "__main__":
    guarded(main, *sys.argv[1:3])

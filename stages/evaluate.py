"""DVC stages `evaluate@<model>-<variant>` and `zero-shot@<model>`: score the test split, write metrics."""

import sys

from medaug import evaluate
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import CONFUSION, EVAL, METRICS, MODELS, PREPARED, candidate


def main(model: str, variant: str) -> None:
    p = load_params()
    name = candidate(model, variant)
    adapter = None if variant == "zero-shot" else MODELS / name
    evaluate.run(p, model, variant, PREPARED / "test.jsonl", adapter, EVAL / name,
                 METRICS / "eval" / f"{name}.json", CONFUSION / f"{name}.json")


if __name__ == "__main__":
    guarded(main, *sys.argv[1:3])

"""DVC stage `register`: log the best candidate to MLflow, register it, move `champion` if it wins."""

from pathlib import Path

from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import EVAL, FILTERED, METRICS, MODELS, PREPARED, REPORTS
from medaug.tracking import register


def main() -> None:
    p = load_params()
    register.run(p, Path.cwd(), METRICS / "eval", EVAL, MODELS, PREPARED / "test.jsonl", REPORTS / "register.json",
                 FILTERED / "datacard.md", REPORTS / "funnel.json")


if __name__ == "__main__":
    guarded(main)

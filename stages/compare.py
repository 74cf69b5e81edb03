"""DVC stage `compare`: the table of recipes (variants over seeds) against `original`, and its plot."""

from medaug.errors import guarded
from medaug.evaluate import compare
from medaug.params import load_params
from medaug.paths import EVAL, PREPARED, REPORTS, VARIANTS_PLOT


def main() -> None:
    compare.run(load_params(), PREPARED / "test.jsonl", EVAL, REPORTS / "dataset", REPORTS / "variants.json",
                VARIANTS_PLOT)


if __name__ == "__main__":
    guarded(main)

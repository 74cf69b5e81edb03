"""DVC stage `compare`: the table of recipes (variants over seeds) against `original`, and the plots that span
every candidate."""

from medaug.errors import guarded
from medaug.evaluate import compare
from medaug.params import load_params
from medaug.paths import CANDIDATES_PLOT, CURVES, DEV_PLOTS, EVAL, METRICS, PREPARED, REPORTS, TRAIN_PLOTS, \
    VARIANTS_PLOT


def main() -> None:
    p = load_params()
    compare.run(p, PREPARED / "test.jsonl", EVAL, REPORTS / "dataset", REPORTS / "variants.json", VARIANTS_PLOT)
    compare.write_plots(p, PREPARED / "test.jsonl", METRICS / "eval", METRICS / "teacher.json",
                        REPORTS / "teacher.json", TRAIN_PLOTS, DEV_PLOTS, CANDIDATES_PLOT, CURVES)


if __name__ == "__main__":
    guarded(main)

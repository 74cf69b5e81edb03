"""DVC stages `train@<model>-<variant>-<seed>` and `train-dapt@<model>-<variant>-<seed>` (variant dapt-<variant>):
fine-tune one student on one variant's training set with one seed, scoring the dev split as it goes. Runs under
torchrun/accelerate too."""

import sys
from pathlib import Path

from medaug import train
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import DEV_PLOTS, MODELS, PREPARED, REPORTS, TRAIN_PLOTS, TRAIN_SETS, Candidate


def main(model: str, variant: str, seed: str) -> None:
    p = load_params()
    c = Candidate(model, variant, int(seed))
    name = c.name
    train.run(p, model, variant, int(seed), TRAIN_SETS / f"{c.recipe}.jsonl", MODELS / name,
              REPORTS / "train" / f"{name}.json", dev_path=PREPARED / "dev.jsonl",
              plots=(TRAIN_PLOTS / f"{name}.json", DEV_PLOTS / f"{name}.json"), mlflow_root=Path.cwd())


if __name__ == "__main__":
    guarded(main, *sys.argv[1:4])

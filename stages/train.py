"""DVC stage `train@<model>-<variant>`: LoRA fine-tuning of one student on one variant's training set."""

import sys

from medaug import train
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, MODELS, TRAIN_SETS, candidate


def main(model: str, variant: str) -> None:
    p = load_params()
    train.run(p, model, variant, TRAIN_SETS / f"{variant}.jsonl", MODELS / candidate(model, variant),
              METRICS / "train" / f"{candidate(model, variant)}.json")


if __name__ == "__main__":
    guarded(main, *sys.argv[1:3])

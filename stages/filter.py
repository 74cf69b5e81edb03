"""DVC stage `filter`: validate, dedup and decontaminate generated data -> data/train/augmented.jsonl."""

from medaug import filtering
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import FILTERED, GENERATED, METRICS, PREPARED, TRAIN_SETS


def main() -> None:
    p = load_params()
    filtering.run(p, PREPARED, GENERATED / "generated.jsonl", FILTERED / "kept.jsonl",
                  FILTERED / "rejects.jsonl", METRICS / "funnel.json", TRAIN_SETS / "augmented.jsonl",
                  GENERATED / "rejects.jsonl")


if __name__ == "__main__":
    guarded(main)

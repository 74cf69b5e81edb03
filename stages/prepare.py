"""DVC stage `prepare`: the task's source (params data.source: sample | hub | a file; the task file names its
loader and split) -> train/dev/test -> data/prepared/*.jsonl."""

from pathlib import Path

from medaug.data import prepare
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import PREPARED, REPORTS


def main() -> None:
    p = load_params()
    prepare.run(p, Path.cwd(), PREPARED, REPORTS / "prepare.json")


if __name__ == "__main__":
    guarded(main)

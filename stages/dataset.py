"""DVC stage `dataset@<variant>`: build the variant's training set from its recipe (`variants.<variant>`)."""

import sys

from medaug import headline
from medaug.data import variants
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, DatasetIO


def main(variant: str) -> str:
    io = DatasetIO.at(variant)
    report = variants.run(load_params(), variant, io)
    write_json(METRICS / "dataset" / f"{variant}.json", headline.dataset(report))
    return f"dataset@{variant}: wrote {io.out} ({report['items']} items)"


if __name__ == "__main__":
    guarded(main, *sys.argv[1:2])

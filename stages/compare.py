"""DVC stage `compare`: the table of recipes (variants over seeds) against `original`, and the plots that span
every candidate."""

from medaug.errors import guarded
from medaug.evaluate import compare
from medaug.params import load_params
from medaug.paths import CompareIO


def main() -> str:
    p, io = load_params(), CompareIO.at()
    table = compare.run(p, io)
    compare.write_plots(p, io)
    return f"compare: wrote {io.out} ({len(table)} recipes) and the plots under plots/"


if __name__ == "__main__":
    guarded(main)

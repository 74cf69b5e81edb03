"""DVC stage `filter`: the steps of params.yaml `filter.steps` over the generated data -> data/filtered/ (kept items,
rejects with their step and reason, the data card) and the funnel report; `dataset@<recipe>` builds the training
sets from the kept items."""

from pathlib import Path

from medaug import filtering, headline
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, FilterIO


def main() -> str:
    p, io = load_params(), FilterIO.at()
    report = filtering.run(p, io, root=Path.cwd())
    write_json(METRICS / "funnel.json", headline.funnel(report))
    return (f"filter: wrote {io.kept.parent}/ (kept {report['kept']} of {report['in']}) and "
            f"{METRICS / 'funnel.json'}")


if __name__ == "__main__":
    guarded(main)

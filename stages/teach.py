"""DVC stages `teach-r<k>@<model>-<recipe>-<seed>`: round k of a recipe with rounds (augment/rounds.py): its
parents from the probe of the student before, the teacher's items from them, the filter, and the round's
training set data/rounds/<model>-<recipe>-r<k>-<seed>/train.jsonl."""

import sys
from pathlib import Path

from medaug import headline
from medaug.augment import rounds
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, Candidate, TeachIO


def main(model: str, recipe: str, k: str, seed: str) -> str:
    c = Candidate.of_round(model, recipe, int(k), int(seed))
    io = TeachIO.at(c)
    r = rounds.teach(load_params(), c, io, Path.cwd())
    write_json(METRICS / "rounds" / f"{c.name}.json", headline.teach(r))
    return (f"{c.stage('teach')}: wrote {io.out}/ ({r['parents']['n']} parents, {r['asked']} asked, {r['kept']} "
            f"kept; {r['items']} training items)")


if __name__ == "__main__":
    guarded(main, *sys.argv[1:5])

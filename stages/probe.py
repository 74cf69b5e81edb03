"""DVC stages `probe-r<k>@<model>-<recipe>-<seed>`: score round k's student before (round k-1's; round 0 is the
`original` candidate) on the train split, the scores round k picks its parents from (evaluate/probe.py)."""

import sys

from medaug.cpu import cap_kernels
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import Candidate, ProbeIO

cap_kernels()  # before torch loads: it fixes its kernels' instruction set then (params cpu.isa, medaug.cpu)

from medaug.evaluate import probe  # noqa: E402 (after the caps)


def main(model: str, recipe: str, k: str, seed: str) -> str:
    c = Candidate.of_round(model, recipe, int(k), int(seed))
    io = ProbeIO.at(c)
    report = probe.probe(load_params(), c, io)
    return f"{c.stage('probe')}: wrote {io.out} ({report['student']} wrong on {report['errors']} of {report['n']})"


if __name__ == "__main__":
    guarded(main, *sys.argv[1:5])

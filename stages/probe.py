"""DVC stages `probe-r<k>@<model>-<seed>` (round 1: the `original` student, shared by every recipe) and
`probe-r<k>@<model>-<recipe>-<seed>` (round k > 1: round k-1 of the recipe): score the student of the round before
on the train split, the scores round k picks its parents from (evaluate/probe.py)."""

import sys

from medaug.cpu import cap_kernels
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import Candidate, ProbeIO

cap_kernels()  # before torch loads: it fixes its kernels' instruction set then (params cpu.isa, medaug.cpu)

from medaug.evaluate import probe  # noqa: E402 (after the caps)


def main(model: str, variant: str, seed: str) -> str:
    student = Candidate(model, variant, int(seed))  # the student of the round before: original or <recipe>-r<k-1>
    io = ProbeIO.at(student)
    report = probe.probe(load_params(), student, io)
    return (f"probe: wrote {io.out} ({student.name} wrong on {report['errors']} of {report['n']} train items)")


if __name__ == "__main__":
    guarded(main, *sys.argv[1:4])

"""DVC stages `train@<model>-<variant>-<seed>` and `train-dapt@<model>-<variant>-<seed>` (variant dapt-<variant>):
fine-tune one student on one variant's training set with one seed, scoring the dev split as it goes. Runs under
torchrun/accelerate too."""

import sys
from pathlib import Path

from medaug.cpu import cap_kernels
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import Candidate, TrainIO

cap_kernels()  # before torch loads: it fixes its kernels' instruction set then (params cpu.isa, medaug.cpu)

from medaug import train  # noqa: E402 (after the caps)


def main(model: str, variant: str, seed: str) -> str:
    c = Candidate(model, variant, int(seed))
    io = TrainIO.at(c)
    m = train.run(load_params(), c, io, mlflow_root=Path.cwd())
    dev = f", dev accuracy {m['dev_accuracy']:.3f} at step {m['best_step']}" if m.get("dev_accuracy") is not None \
        else ""
    return f"{c.stage('train')}: wrote {io.out}/ and {io.report} ({m['steps']} steps{dev})"


if __name__ == "__main__":
    guarded(main, *sys.argv[1:4])

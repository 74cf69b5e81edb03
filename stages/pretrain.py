"""DVC stage `pretrain@<model>`: continued pretraining on pretrain.corpus (less what leaks the test split); the base
of the dapt-* candidates."""

import sys
from pathlib import Path

from medaug.cpu import cap_kernels
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import PretrainIO

cap_kernels()  # before torch loads: it fixes its kernels' instruction set then (params cpu.isa, medaug.cpu)

from medaug.train import pretrain  # noqa: E402 (after the caps)


def main(model: str) -> str:
    p = load_params()
    io = PretrainIO.at(model, Path(p.pretrain.corpus))
    m = pretrain.run(p, model, io, mlflow_root=Path.cwd())
    return f"pretrain@{model}: wrote {io.out}/ and {io.report} ({m['steps']} steps)"


if __name__ == "__main__":
    guarded(main, *sys.argv[1:2])

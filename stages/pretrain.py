"""DVC stage `pretrain@<model>`: continued pretraining on pretrain.corpus (less what leaks the test split); the base
of the dapt-* candidates."""

import sys
from pathlib import Path

from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import PretrainIO
from medaug.train import pretrain


def main(model: str) -> None:
    p = load_params()
    pretrain.run(p, model, PretrainIO.at(model, Path(p.pretrain.corpus)), mlflow_root=Path.cwd())


if __name__ == "__main__":
    guarded(main, *sys.argv[1:2])

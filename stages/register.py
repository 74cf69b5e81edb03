"""DVC stage `register`: log the best candidate to MLflow, register it, move `champion` if it wins."""

from pathlib import Path

from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import RegisterIO
from medaug.tracking import register


def main() -> None:
    register.run(load_params(), Path.cwd(), RegisterIO.at())


if __name__ == "__main__":
    guarded(main)

"""DVC stage `registry` (always run): does the registry still hold the version reports/register.json names?
If not, `register` runs again (see medaug.tracking.registry)."""

from pathlib import Path

from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import REPORTS
from medaug.tracking import registry


def main() -> None:
    print(registry.check(load_params(), Path.cwd(), REPORTS / "registry.json", REPORTS / "register.json"))


if __name__ == "__main__":
    guarded(main)

"""DVC stage `prepare`: the task's source (params data.source: a file or folder, a dependency of this stage; the
task file names its loader and split) -> train/dev/test -> data/prepared/*.jsonl, reports/prepare.json."""

from pathlib import Path

from medaug.data import prepare
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import PREPARE_REPORT, PREPARED


def main() -> str:
    p = load_params()
    counts = prepare.run(p, Path.cwd(), PREPARED, PREPARE_REPORT)
    splits = ", ".join(f"{split} {counts[split]['total']}" for split in ("train", "dev", "test"))
    return f"prepare: wrote {PREPARED}/ ({splits}) and {PREPARE_REPORT}"


if __name__ == "__main__":
    guarded(main)

"""DVC stage `generate`: the teacher writes QA from train records or corpus passages -> data/generated/."""

from dataclasses import asdict
from pathlib import Path

from medaug import augment, tracking
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import GENERATED, METRICS, PREPARED


def main() -> None:
    p = load_params()
    metrics = augment.run(p, Path.cwd(), PREPARED, GENERATED / "generated.jsonl", GENERATED / "rejects.jsonl",
                          METRICS / "generate.json")
    tracking.log_stage(Path.cwd(), "generate", {"teacher": asdict(p.teacher), "generate": asdict(p.generate)}, metrics)


if __name__ == "__main__":
    guarded(main)

"""DVC stage `evaluate-teacher`: the teacher answers the test split k-shot (the few-shot teacher baseline)."""

from pathlib import Path

from medaug.errors import guarded
from medaug.evaluate import teacher_baseline
from medaug.params import load_params
from medaug.paths import CONFUSION, METRICS, PER_CLASS, PREPARED, TEACHER_EVAL


def main() -> None:
    p = load_params()
    teacher_baseline.run(p, Path.cwd(), PREPARED / "train.jsonl", PREPARED / "test.jsonl", TEACHER_EVAL,
                         METRICS / "teacher.json", CONFUSION / "teacher.json", PER_CLASS / "teacher.json",
                         mlflow_root=Path.cwd())


if __name__ == "__main__":
    guarded(main)

"""DVC stage `evaluate-teacher`: the teacher answers the test split k-shot (the few-shot teacher baseline)."""

from pathlib import Path

from medaug import headline
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.evaluate import teacher_baseline
from medaug.params import load_params
from medaug.paths import METRICS, TeacherIO


def main() -> str:
    report = teacher_baseline.run(load_params(), Path.cwd(), TeacherIO.at(), mlflow_root=Path.cwd())
    write_json(METRICS / "teacher.json", headline.scores(report))
    return f"evaluate-teacher: wrote {METRICS / 'teacher.json'}: {headline.line(report)}"


if __name__ == "__main__":
    guarded(main)
